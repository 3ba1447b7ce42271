package consensus

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestRestartServesLastDocBeforeNetwork(t *testing.T) {
	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	l := c.leader(20 * time.Second)
	for _, w := range []struct{ name, content string }{{"a", "a1"}, {"b", "b1"}, {"a", "a2"}} {
		if _, err := l.s.Put(ctxT(t, 5*time.Second), w.name, []byte(w.content), -1); err != nil {
			t.Fatal(err)
		}
	}
	f := c.follower(l)
	waitFor(t, 5*time.Second, "follower applies a2", func() bool { d, _ := f.s.Get("a"); return d.Version == 2 })
	c.kill(f)
	if _, err := l.s.Put(ctxT(t, 5*time.Second), "b", []byte("b2-while-down"), -1); err != nil {
		t.Fatal(err)
	}

	// New alone (no Start, no socket) restores the applied documents and calls
	// OnApply for the latest version of each, in commit order.
	var (
		mu    sync.Mutex
		calls []Doc
	)
	got := func() []Doc { mu.Lock(); defer mu.Unlock(); return append([]Doc(nil), calls...) }
	cfg := f.cfg
	cfg.OnApply = func(d Doc) { mu.Lock(); calls = append(calls, d); mu.Unlock() }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if d, ok := s.Get("a"); !ok || string(d.Content) != "a2" {
		t.Fatalf("Get(a) before Start = %+v %v", d, ok)
	}
	if c := got(); len(c) != 2 || string(c[0].Content) != "b1" || string(c[1].Content) != "a2" {
		t.Fatalf("OnApply during New = %v, want [b1 a2] in commit order", contents(c))
	}
	if s.Addr() != "" || !s.HasState() {
		t.Fatalf("Addr %q HasState %v: want no socket yet and existing state", s.Addr(), s.HasState())
	}

	// Start rejoins; the write made while down arrives, nothing is delivered twice.
	if err := s.Start(ctxT(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	f.s = s
	delete(c.down, f.id)
	c.reconcile()
	waitFor(t, 10*time.Second, "restarted node catches up", func() bool { d, _ := s.Get("b"); return d.Version == 2 })
	waitFor(t, 5*time.Second, "OnApply of b2", func() bool { return len(got()) >= 3 })
	if c := got(); len(c) != 3 || string(c[2].Content) != "b2-while-down" {
		t.Fatalf("OnApply after rejoin = %v", contents(c))
	}
	if s.Bootstrapped() {
		t.Fatal("a node with state bootstrapped again")
	}
}

func contents(ds []Doc) []string {
	var out []string
	for _, d := range ds {
		out = append(out, string(d.Content))
	}
	return out
}

func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultLocalConfig()
	cfg.ID, cfg.DataDir = "n1", dir
	s1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); !errors.Is(err, ErrLocked) {
		s1.Close()
		t.Fatalf("second New on the same dir: err = %v, want ErrLocked", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := New(cfg)
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	s2.Close()
}

func TestSnapshotRestore(t *testing.T) {
	snap := func(cfg *Config) {
		cfg.SnapshotThreshold = 4
		cfg.TrailingLogs = 2
		cfg.MaxHistory = 3
	}
	c := newCluster(t, 3, 3, snap)
	c.reconcile()
	l := c.leader(20 * time.Second)
	for i := range 10 {
		if _, err := l.s.Put(ctxT(t, 5*time.Second), "cfg", []byte{byte('a' + i)}, -1); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.s.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// A fresh 4th server can only catch up through InstallSnapshot: the log is truncated.
	n4 := newNode(t, "n4", t.TempDir(), 0, snap)
	c.add(n4)
	c.reconcile()
	waitFor(t, 15*time.Second, "n4 restored from snapshot", func() bool { d, _ := n4.s.Get("cfg"); return d.Version == 10 })
	if h := n4.s.History("cfg"); len(h) != 3 || h[0].Version != 8 {
		t.Fatalf("n4 history = %+v, want versions 8..10", h)
	}

	// Restart the leader with its applied-state file removed: the snapshot
	// and the log rebuild the same state.
	dir, cfg := l.dir, l.cfg
	c.kill(l)
	if err := os.Remove(filepath.Join(dir, "applied.msgpack")); err != nil {
		t.Fatal(err)
	}
	cfg.OnApply = nil
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Start(ctxT(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	l.s = s
	delete(c.down, l.id)
	c.reconcile()
	waitFor(t, 15*time.Second, "restarted node restored", func() bool { d, _ := s.Get("cfg"); return d.Version == 10 })
	if h := s.History("cfg"); len(h) != 3 || string(h[2].Content) != "j" {
		t.Fatalf("history after restore = %+v", h)
	}
}

func TestAppliedStateWithoutRaftLogIsDiscarded(t *testing.T) {
	n := newNode(t, "n1", t.TempDir(), 1, nil)
	if _, err := n.s.WaitForLeader(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := n.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("old"), -1); err != nil {
			t.Fatal(err)
		}
	}
	n.s.Close()
	if err := os.Remove(filepath.Join(n.dir, "raft.db")); err != nil {
		t.Fatal(err)
	}
	m := newNode(t, "n1", n.dir, 1, nil)
	if _, ok := m.s.Get("cfg"); ok {
		t.Fatal("documents of a lost raft log were served")
	}
	if _, err := m.s.WaitForLeader(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "leader", m.s.IsLeader)
	d, err := m.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("new"), -1)
	if err != nil || d.Version != 1 {
		t.Fatalf("first write on the new log = %+v, %v", d, err)
	}
}

// TestDataDirOfAnotherServerRefused: raft state started under another ID
// (a typo in a host's --name, another host's data dir) is refused, naming
// both IDs, and changes nothing on disk; started under its own ID it
// opens. Before, it opened under the new ID, and the leader replaced the
// old server at its address with it (seen on network namespaces: n5's
// data dir started as n9 made n9 a voter and took n5 out of raft).
func TestDataDirOfAnotherServerRefused(t *testing.T) {
	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	l := c.leader(20 * time.Second)
	if _, err := l.s.Put(ctxT(t, 5*time.Second), "a", []byte("a1"), -1); err != nil {
		t.Fatal(err)
	}
	f := c.follower(l)
	waitFor(t, 5*time.Second, "follower applies a1", func() bool { _, ok := f.s.Get("a"); return ok })
	c.kill(f)

	cfg := f.cfg
	cfg.ID = "someone-else"
	_, err := New(cfg)
	var mis *IDMismatchError
	if !errors.As(err, &mis) || mis.Have != f.id || mis.Want != "someone-else" {
		t.Fatalf("New under another ID: %v, want an IDMismatchError naming %q and %q", err, f.id, "someone-else")
	}
	s, err := New(f.cfg)
	if err != nil {
		t.Fatalf("New under its own ID after the refusal: %v", err)
	}
	s.Close()

	// A data dir without raft state takes whichever ID starts on it.
	fresh := f.cfg
	fresh.DataDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(fresh.DataDir, serverIDFile), []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = New(fresh)
	if err != nil {
		t.Fatalf("New on a data dir with no raft state: %v", err)
	}
	s.Close()
	if b, _ := os.ReadFile(filepath.Join(fresh.DataDir, serverIDFile)); string(b) != fresh.ID+"\n" {
		t.Fatalf("%s after New = %q, want %q", serverIDFile, b, fresh.ID)
	}
}
