package membership

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestStrangerWithBadNameIgnored: a node that joins a gossip port without
// a key under a name no node of this package can have (here terminal
// escape sequences) is not taken in: its push/pull is refused and its
// alive messages ignored, so it never shows in Members. Before checkName
// it was listed as an alive member, and `pingora-node members` wrote its
// name to the operator's terminal as it was.
func TestStrangerWithBadNameIgnored(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})

	const bad = "evil\x1b]0;owned\x07\x1b[31m"
	mc := memberlist.DefaultLocalConfig()
	mc.Name = bad
	mc.BindAddr, mc.BindPort, mc.AdvertisePort = "127.0.0.1", 0, 0
	mc.LogOutput = sink
	mc.GossipInterval, mc.ProbeInterval = 20*time.Millisecond, 50*time.Millisecond
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Shutdown() })
	ml.Join([]string{a.Addr()}) // the stranger learns of a whatever a thinks of it

	waitFor(t, 10*time.Second, "a refused the stranger's alive message", func() bool {
		return sink.contains("ignoring alive message")
	})
	waitFor(t, 10*time.Second, "a refused the stranger's push/pull", func() bool {
		return sink.contains("invalid node name")
	})
	for _, m := range a.Members() {
		if m.Name == bad {
			t.Fatalf("a lists the stranger: %+v", m)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"n1", "node-1.zone_a", strings.Repeat("x", 64)} {
		if err := checkName(ok); err != nil {
			t.Errorf("checkName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "a\nb", "\x1b[2J", "é", strings.Repeat("x", 65), "a/b"} {
		if err := checkName(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("checkName(%q) = %v, want ErrBadName", bad, err)
		}
	}
	if err := (Config{Name: "a\x1b"}).Validate(); !errors.Is(err, ErrBadName) {
		t.Errorf("Validate took a bad name: %v", err)
	}
	err := checkName(strings.Repeat("y", 1<<20))
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("a megabyte name's error is %d bytes", len(err.Error()))
	}
}
