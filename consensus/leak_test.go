package consensus

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// ourGoroutines returns the stacks of goroutines running consensus, raft or
// autopilot code, other than the caller's.
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n")[1:] { // [0] is the caller
		if strings.Contains(g, "created by github.com/hashicorp/") ||
			strings.Contains(g, "created by github.com/pingora-go/pingora-go/consensus.(") {
			out = append(out, g)
		}
	}
	return out
}

// TestNoGoroutinesAfterClose stands in for goleak (not a module dependency
// yet): after Close of every server, none of their goroutines remain.
func TestNoGoroutinesAfterClose(t *testing.T) {
	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	l := c.leader(20 * time.Second)
	if _, err := l.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("x"), -1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.s.GetConsistent(ctxT(t, 5*time.Second), "cfg"); err != nil {
		t.Fatal(err)
	}
	if err := l.s.Shutdown(); err != nil { // with leadership transfer
		t.Fatalf("Shutdown: %v", err)
	}
	for _, n := range c.nodes {
		if err := n.s.Close(); err != nil {
			t.Fatalf("Close %s: %v", n.id, err)
		}
	}
	var left []string
	deadline := time.Now().Add(10 * time.Second)
	for left = ourGoroutines(); len(left) > 0 && time.Now().Before(deadline); left = ourGoroutines() {
		time.Sleep(20 * time.Millisecond) // sleep-ok: polling for goroutines to exit
	}
	if len(left) > 0 {
		t.Fatalf("%d goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}
