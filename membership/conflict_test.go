package membership

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func addrOn(c *Cluster, name string) string {
	for _, m := range c.Members() {
		if m.Name == name && m.State == Alive {
			return m.Addr
		}
	}
	return ""
}

// TestNameConflictRefused (issue 12): a second node with the name of a live
// node stops with ErrNameConflict and says where the other one is; the
// cluster keeps the first.
func TestNameConflictRefused(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "2 nodes", func() bool { return sameRing([]*Cluster{a, b}, 2) })
	dup := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	select {
	case err := <-dup.Err():
		if !errors.Is(err, ErrNameConflict) || !strings.Contains(err.Error(), "alive at "+b.Addr()) {
			t.Fatalf("Err: %v", err)
		}
		t.Logf("the second b stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the second b runs on")
	}
	if st := dup.Status().Join; st.Joined || !strings.Contains(st.LastError, "name conflict") {
		t.Fatalf("join status %+v", st)
	}
	if err := dup.Leave(time.Second); !errors.Is(err, ErrNameConflict) {
		t.Fatalf("Leave after a conflict: %v (a leave would be taken for the other b's)", err)
	}
	if got := addrOn(a, "b"); got != b.Addr() {
		t.Fatalf("a sees b at %q, want the first b at %s", got, b.Addr())
	}
}

// TestRestartKeepsName: the same node restarted at once, at the same address
// (peers still think the old one alive) or at a new one (peers still list
// the old address, which no longer answers), is let back in under its name.
func TestRestartKeepsName(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "2 nodes", func() bool { return sameRing([]*Cluster{a, b}, 2) })
	addr := b.Addr()
	b.Shutdown()
	same := startNode(t, sink, Config{Name: "b", BindAddr: addr, Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "b back at the same address", func() bool { return same.Status().Join.Joined && addrOn(a, "b") == addr })
	same.Shutdown()
	moved := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	waitFor(t, 15*time.Second, "b back at a new address", func() bool {
		return moved.Status().Join.Joined && addrOn(a, "b") == moved.Addr()
	})
	for _, c := range []*Cluster{same, moved} {
		select {
		case err := <-c.Err():
			t.Fatalf("a restart was refused: %v", err)
		default:
		}
	}
}
