package consensus

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuf) contains(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Contains(w.b.String(), s)
}

// TestServerAtLiveServersAddressNotAdded: a server that advertises the raft
// address of a live voter (a host started with --advertise-addr of another)
// is not added, and the voter stays. Before, autopilot's AddServer took it
// for a replaced host: the leader removed the live voter, added the new
// server at its address, then the voter back in its place, every step
// while the misconfigured node ran (on 3 hosts, voters 3 became 2 for as
// long). A server at the address of a dead one still replaces it.
func TestServerAtLiveServersAddressNotAdded(t *testing.T) {
	var logs lockedBuf
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
		return logs.contains(warned) || len(v) != 3 || len(nv) != 0
	})
	if v, nv := voters(l); len(v) != 3 || len(nv) != 0 || !slices.Contains(v, f.id) {
		t.Fatalf("voters %v non-voters %v: the live voter %s at %s was displaced by n9", v, nv, f.id, f.s.Addr())
	}
	if !logs.contains("id=n9") || !logs.contains("address_of="+f.id) {
		t.Fatalf("the warning does not name n9 and %s:\n%s", f.id, logs.b.String())
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
