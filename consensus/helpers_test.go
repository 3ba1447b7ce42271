package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// testWriter forwards to t.Output until the test ends, then drops, so that
// a late raft log line cannot fail a finished test.
type testWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.w.Write(p)
}

func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelError
	if os.Getenv("CONSENSUS_DEBUG") != "" {
		level = slog.LevelDebug
	}
	w := &testWriter{w: t.Output()}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // sleep-ok: polling interval of a condition wait
	}
	return time.Since(start)
}

// tnode is one Store under test with a record of its OnApply calls.
type tnode struct {
	id  string
	dir string
	cfg Config
	s   *Store

	mu        sync.Mutex
	applied   []Doc
	appliedAt map[uint64]time.Time // by raft index
}

// record is a test node's OnApply: it keeps each document and when it
// came.
func (n *tnode) record(d Doc) {
	n.mu.Lock()
	n.applied = append(n.applied, d)
	n.appliedAt[d.Index] = time.Now()
	n.mu.Unlock()
}

// appliedTime returns when OnApply saw the entry at index, if it did.
func (n *tnode) appliedTime(index uint64) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	at, ok := n.appliedAt[index]
	return at, ok
}

func (n *tnode) appliedDocs() []Doc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Doc(nil), n.applied...)
}

// newNode makes and starts a Store with the fast profile in dir.
func newNode(t *testing.T, id, dir string, expect int, mod func(*Config)) *tnode {
	t.Helper()
	n := &tnode{id: id, dir: dir, appliedAt: map[uint64]time.Time{}}
	cfg := DefaultLocalConfig()
	cfg.ID, cfg.DataDir, cfg.BootstrapExpect = id, dir, expect
	cfg.Logger = testLogger(t).With("node", id)
	cfg.OnApply = n.record
	if mod != nil {
		mod(&cfg)
	}
	n.cfg = cfg
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", id, err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start(%s): %v", id, err)
	}
	n.s = s
	t.Cleanup(func() { s.Close() })
	return n
}

type cluster struct {
	t     *testing.T
	nodes []*tnode
	down  map[string]bool // closed without leaving
	left  map[string]bool
}

// newCluster starts n nodes with BootstrapExpect expect; it does not call
// Reconcile.
func newCluster(t *testing.T, n, expect int, mod func(*Config)) *cluster {
	c := &cluster{t: t, down: map[string]bool{}, left: map[string]bool{}}
	for i := range n {
		c.nodes = append(c.nodes, newNode(t, fmt.Sprintf("n%d", i+1), t.TempDir(), expect, mod))
	}
	return c
}

func (c *cluster) add(n *tnode) { c.nodes = append(c.nodes, n) }

// servers is the membership view: every node, alive unless down or left,
// with what it would gossip about its raft state, as node does.
func (c *cluster) servers() []Server {
	var out []Server
	for _, n := range c.nodes {
		out = append(out, Server{ID: n.id, Addr: n.s.Addr(), Alive: !c.down[n.id] && !c.left[n.id], Left: c.left[n.id],
			HasState: n.s.HasState(), ClusterID: n.s.ClusterID(), Recovering: n.s.Recovering()})
	}
	return out
}

func (c *cluster) live() []*tnode {
	var out []*tnode
	for _, n := range c.nodes {
		if !c.down[n.id] && !c.left[n.id] {
			out = append(out, n)
		}
	}
	return out
}

// reconcile gives every live node the full membership view.
func (c *cluster) reconcile() {
	sv := c.servers()
	for _, n := range c.live() {
		n.s.Reconcile(sv)
	}
}

// kill closes a node abruptly and tells the others it failed.
func (c *cluster) kill(n *tnode) {
	n.s.Close()
	c.down[n.id] = true
	c.reconcile()
}

// leader waits until exactly one live node leads and all live nodes agree.
func (c *cluster) leader(d time.Duration) *tnode {
	c.t.Helper()
	var l *tnode
	waitFor(c.t, d, "one agreed leader", func() bool {
		l = nil
		for _, n := range c.live() {
			if n.s.IsLeader() {
				if l != nil {
					return false
				}
				l = n
			}
		}
		if l == nil {
			return false
		}
		for _, n := range c.live() {
			if id, _ := n.s.Leader(); id != l.id {
				return false
			}
		}
		return true
	})
	return l
}

func (c *cluster) follower(l *tnode) *tnode {
	for _, n := range c.live() {
		if n != l {
			return n
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// voters returns the voter and non-voter IDs in l's configuration.
func voters(l *tnode) (v, nv []string) {
	st := l.s.Status()
	for _, p := range st.Voters {
		v = append(v, p.ID)
	}
	for _, p := range st.NonVoters {
		nv = append(nv, p.ID)
	}
	return v, nv
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// put writes content to name through the current leader, as a client
// does, and returns that leader: a write that lost its leader (the fast
// profile's 200ms lease can run out on a loaded machine, and the leader
// steps down) is sent again through the next one, until a deadline.
func (c *cluster) put(name string, content []byte) *tnode {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l := c.leader(20 * time.Second)
		_, err := l.s.Put(ctxT(c.t, 5*time.Second), name, content, -1)
		var nl *NotLeaderError
		switch {
		case err == nil:
			return l
		case (errors.Is(err, ErrNoQuorum) || errors.As(err, &nl)) && time.Now().Before(deadline):
			c.t.Logf("write of %s through %s: %v; writing again", name, l.id, err)
		default:
			c.t.Fatalf("write of %s through %s: %v", name, l.id, err)
		}
	}
}
