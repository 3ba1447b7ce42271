package consensus

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/internal/logtest"
)

func TestServerAtLiveServersAddressNotAdded(t *testing.T) {
	var logs logtest.Buffer
	c := newCluster(t, 3, 3, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", cfg.ID)
	})
	c.reconcile()
	l := c.leader(20 * time.Second)
	waitFor(t, 10*time.Second, "3 voters", func() bool { v, _ := voters(l); return len(v) == 3 })
	f := c.follower(l)
	imp := Server{ID: "n9", Addr: f.s.Addr(), Alive: true}
	l.s.Reconcile(append(c.servers(), imp))
	const warned = "advertises the raft address of another live server"
	waitFor(t, 10*time.Second, "the leader's answer to n9", func() bool {
		v, nv := voters(l)
		return strings.Contains(logs.String(), warned) || len(v) != 3 || len(nv) != 0
	})
	if v, nv := voters(l); len(v) != 3 || len(nv) != 0 || !slices.Contains(v, f.id) {
		t.Fatalf("voters %v non-voters %v: the live voter %s at %s was displaced by n9", v, nv, f.id, f.s.Addr())
	}
	if !strings.Contains(logs.String(), "id=n9") || !strings.Contains(logs.String(), "address_of="+f.id) {
		t.Fatalf("the warning does not name n9 and %s:\n%s", f.id, logs.String())
	}

	// The voter dies: a server at its address is a replaced host.
	c.down[f.id] = true
	f.s.Close()
	l.s.Reconcile(append(c.servers(), imp))
	waitFor(t, 10*time.Second, "n9 in the place of the dead "+f.id, func() bool {
		v, nv := voters(l)
		return slices.Contains(nv, "n9") && !slices.Contains(v, f.id)
	})
}
