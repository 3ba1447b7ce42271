package consensus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/pingora-go/pingora-go/clock"
)

// catchCluster starts n servers over raft's in-memory transport, all
// connected, and returns them with their transports by ID.
func catchCluster(t *testing.T, n int, mod func(*Config)) (*cluster, map[string]*raft.InmemTransport) {
	trans := map[string]*raft.InmemTransport{}
	c := &cluster{t: t, down: map[string]bool{}, left: map[string]bool{}}
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		_, tr := raft.NewInmemTransport(raft.ServerAddress("inmem-" + id))
		trans[id] = tr
		c.add(newNode(t, id, t.TempDir(), n, func(cfg *Config) {
			cfg.Transport = tr
			if mod != nil {
				mod(cfg)
			}
		}))
	}
	for a, ta := range trans {
		for b, tb := range trans {
			if a != b {
				ta.Connect(tb.LocalAddr(), tb)
			}
		}
	}
	c.reconcile()
	return c, trans
}

// restartCut restarts the closed server f on a new in-memory transport
// that reaches the others, but that the others cannot reach yet (as a
// leader whose replication to f backs off): it returns the new transport.
func restartCut(t *testing.T, c *cluster, trans map[string]*raft.InmemTransport, f *tnode, mod func(*Config)) (*raft.InmemTransport, *tnode) {
	t.Helper()
	_, tr := raft.NewInmemTransport(raft.ServerAddress("inmem-" + f.id))
	for id, other := range trans {
		if id != f.id {
			tr.Connect(other.LocalAddr(), other)
		}
	}
	trans[f.id] = tr
	n := &tnode{id: f.id, dir: f.dir, appliedAt: map[uint64]time.Time{}}
	cfg := f.cfg
	cfg.Transport = tr
	cfg.OnApply = n.record
	if mod != nil {
		mod(&cfg)
	}
	n.cfg = cfg
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.s = s
	for i, m := range c.nodes {
		if m.id == f.id {
			c.nodes[i] = n
		}
	}
	delete(c.down, f.id)
	return tr, n
}

// TestRestartedServerNotCaughtUpUntilLeadersCommit: a server restarted
// after missing 12 writes restores and serves its old documents, and its
// own commit index says nothing of what it misses (raft caps it at its
// last log index). CatchUp reports it waiting until it has applied, and
// handed to OnApply, everything up to the leader's commit index; the
// operator's cluster called such a node ready and served version 11 for
// 9 s while the leader's replication to it backed off.
func TestRestartedServerNotCaughtUpUntilLeadersCommit(t *testing.T) {
	c, trans := catchCluster(t, 3, nil)
	for i := 1; i <= 11; i++ {
		c.put("cfg", []byte("v"+strconv.Itoa(i)))
	}
	l := c.leader(20 * time.Second)
	f := c.follower(l)
	waitFor(t, 10*time.Second, "follower applies v11", func() bool { d, _ := f.s.Get("cfg"); return d.Version == 11 })
	if cu := f.s.CatchUp(); !cu.Done() {
		t.Fatalf("an up-to-date follower: CatchUp = %+v", cu)
	}
	c.kill(f)
	for id, tr := range trans {
		if id != f.id {
			tr.Disconnect(raft.ServerAddress("inmem-" + f.id))
		}
	}
	for i := 12; i <= 23; i++ {
		c.put("cfg", []byte("v"+strconv.Itoa(i)))
	}

	_, f = restartCut(t, c, trans, f, nil)
	if d, _ := f.s.Get("cfg"); d.Version != 11 {
		t.Fatalf("restarted server serves version %d, want its old 11", d.Version)
	}
	cu := f.s.CatchUp()
	if !cu.Waiting || cu.LeaderCommit != 0 {
		t.Fatalf("restarted server, no word from the leader yet: CatchUp = %+v, want waiting for the leader's commit index", cu)
	}
	if st := f.s.Status(); st.CatchUp == nil || !st.CatchUp.Waiting {
		t.Fatalf("Status().CatchUp = %+v", st.CatchUp)
	}

	// The leader's commit index as an AppendEntries carries it.
	l = nil
	waitFor(t, 20*time.Second, "a leader", func() bool {
		for _, n := range c.nodes {
			if n != f && n.s.IsLeader() {
				l = n
				return true
			}
		}
		return false
	})
	commit := l.s.Status().CommitIndex
	f.s.noteCommit(commit, false)
	cu = f.s.CatchUp()
	if !cu.Waiting || cu.LeaderCommit != commit || cu.Applied >= commit {
		t.Fatalf("after the leader's commit index %d: CatchUp = %+v, want waiting at applied < %d", commit, cu, commit)
	}

	// The leader reaches it again: it catches up, and is done only once
	// OnApply has had the latest version.
	for id, tr := range trans {
		if id != f.id {
			tr.Connect(raft.ServerAddress("inmem-"+f.id), trans[f.id])
		}
	}
	waitFor(t, 30*time.Second, "caught up", func() bool { return f.s.CatchUp().Done() })
	// The leader's version of the document: 23, or more when a write
	// that lost its leader while committing was sent again (put) and
	// both copies committed.
	want, _ := l.s.Get("cfg")
	docs := f.appliedDocs()
	if len(docs) == 0 || docs[len(docs)-1].Version != want.Version || string(docs[len(docs)-1].Content) != "v23" {
		t.Fatalf("caught up, but OnApply had %v, want v23 (version %d) last", contents(docs), want.Version)
	}
	if st := f.s.Status(); st.CatchUp != nil {
		t.Fatalf("caught up: Status().CatchUp = %+v", st.CatchUp)
	}
}

// TestCatchUpGivesUpAfterTimeout: a restarted server that hears no leader
// stops waiting after CatchUpTimeout and says it gave up.
func TestCatchUpGivesUpAfterTimeout(t *testing.T) {
	c, trans := catchCluster(t, 3, nil)
	c.put("cfg", []byte("v1"))
	l := c.leader(20 * time.Second)
	f := c.follower(l)
	waitFor(t, 10*time.Second, "follower applies v1", func() bool { d, _ := f.s.Get("cfg"); return d.Version == 1 })
	c.kill(f)
	for id, tr := range trans {
		if id != f.id {
			tr.Disconnect(raft.ServerAddress("inmem-" + f.id))
		}
	}
	clk := clock.NewFake(time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC))
	_, f = restartCut(t, c, trans, f, func(cfg *Config) { cfg.Clock = clk })
	if cu := f.s.CatchUp(); !cu.Waiting || cu.GaveUp {
		t.Fatalf("just restarted: CatchUp = %+v", cu)
	}
	clk.Advance(f.cfg.Timing.CatchUpTimeout - time.Millisecond)
	if cu := f.s.CatchUp(); !cu.Waiting {
		t.Fatalf("1ms before the timeout: CatchUp = %+v", cu)
	}
	clk.Advance(time.Millisecond)
	if cu := f.s.CatchUp(); cu.Waiting || !cu.GaveUp || cu.Done() {
		t.Fatalf("at the timeout: CatchUp = %+v, want gave up", cu)
	}
	// Reached again, it catches up and the note goes.
	for id, tr := range trans {
		if id != f.id {
			tr.Connect(raft.ServerAddress("inmem-"+f.id), trans[f.id])
		}
	}
	waitFor(t, 30*time.Second, "caught up after giving up", func() bool { return f.s.CatchUp().Done() })
}

// TestSingleServerAndNewClusterCatchUp: the only voter of its cluster has
// nothing to catch up with after a restart, and the servers of a new
// cluster are done once a leader's commit reaches them.
func TestSingleServerAndNewClusterCatchUp(t *testing.T) {
	one := newNode(t, "solo", t.TempDir(), 1, nil)
	waitFor(t, 10*time.Second, "solo leads", one.s.IsLeader)
	if _, err := one.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("v1"), -1); err != nil {
		t.Fatal(err)
	}
	one.s.Close()
	cfg := one.cfg
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cu := s.CatchUp(); !cu.Done() {
		t.Fatalf("restarted single server: CatchUp = %+v, want done at once", cu)
	}

	c, _ := catchCluster(t, 3, nil)
	c.put("cfg", []byte("v1"))
	for _, n := range c.nodes {
		waitFor(t, 10*time.Second, n.id+" caught up", func() bool { return n.s.CatchUp().Done() })
	}
}

// TestRejoinedServerCatchesUpAgain: a follower cut off from the others
// (it knows no leader) keeps serving what it has, as before; an
// AppendEntries that reaches it again arms the wait, which counts once
// it carries the leader's commit index (an election's heartbeat alone
// does not make followers not ready), until it has applied it.
func TestRejoinedServerCatchesUpAgain(t *testing.T) {
	c, trans := catchCluster(t, 3, nil)
	c.put("cfg", []byte("v1"))
	l := c.leader(20 * time.Second)
	f := c.follower(l)
	waitFor(t, 10*time.Second, "follower applies v1", func() bool { d, _ := f.s.Get("cfg"); return d.Version == 1 })
	fa := raft.ServerAddress("inmem-" + f.id)
	for id, tr := range trans {
		if id != f.id {
			tr.Disconnect(fa)
			trans[f.id].Disconnect(tr.LocalAddr())
		}
	}
	c.down[f.id] = true // the majority's view
	for i := 2; i <= 5; i++ {
		c.put("cfg", []byte("v"+strconv.Itoa(i)))
	}
	waitFor(t, 10*time.Second, "the cut-off follower knows no leader", func() bool { id, _ := f.s.Leader(); return id == "" })
	if cu := f.s.CatchUp(); !cu.Done() {
		t.Fatalf("cut off, it serves what it has: CatchUp = %+v", cu)
	}
	f.s.noteCommit(0, true) // a heartbeat of the leader, which carries no commit index
	if cu := f.s.CatchUp(); !cu.Done() {
		t.Fatalf("re-joined, commit index not heard yet: CatchUp = %+v, want not waiting", cu)
	}
	l = nil
	waitFor(t, 20*time.Second, "a leader", func() bool {
		for _, n := range c.nodes {
			if n != f && n.s.IsLeader() {
				l = n
				return true
			}
		}
		return false
	})
	commit := l.s.Status().CommitIndex
	f.s.noteCommit(commit, true)
	if cu := f.s.CatchUp(); !cu.Waiting || cu.LeaderCommit != commit || cu.Applied >= commit {
		t.Fatalf("re-joined behind the leader's %d: CatchUp = %+v, want waiting", commit, cu)
	}
	for id, tr := range trans {
		if id != f.id {
			tr.Connect(fa, trans[f.id])
			trans[f.id].Connect(tr.LocalAddr(), tr)
		}
	}
	delete(c.down, f.id)
	waitFor(t, 30*time.Second, "caught up", func() bool { return f.s.CatchUp().Done() })
	if docs := f.appliedDocs(); docs[len(docs)-1].Version != 5 {
		t.Fatalf("caught up, but OnApply had %v, want v5 last", contents(docs))
	}
}

// TestHandedOverServerStartsCaughtUp: a successor process that takes the
// data directory over from one that had applied index i while caught up
// (Config.CaughtUpThrough, a graceful upgrade) starts caught up, before
// any word from the leader, and the leader's first AppendEntries is no
// re-join. The upgraded node of the chaos run went unready, and off every
// ring, for 1.2 s at each upgrade while it waited for that word. A
// predecessor that had applied more than the directory holds (it did not
// let go of it cleanly), or none named, still waits.
func TestHandedOverServerStartsCaughtUp(t *testing.T) {
	c, trans := catchCluster(t, 3, nil)
	for i := 1; i <= 3; i++ {
		c.put("cfg", []byte("v"+strconv.Itoa(i)))
	}
	l := c.leader(20 * time.Second)
	f := c.follower(l)
	waitFor(t, 10*time.Second, "follower applies v3", func() bool { d, _ := f.s.Get("cfg"); return d.Version == 3 })
	waitFor(t, 10*time.Second, "follower caught up", func() bool { return f.s.CatchUp().Done() })
	applied := f.s.AppliedIndex()

	for _, tc := range []struct {
		through  uint64
		caughtUp bool
	}{{applied + 1, false}, {0, false}, {applied, true}} {
		c.kill(f)
		// The others cannot reach the successor yet: no AppendEntries
		// can have told it anything when it is asked.
		for id, tr := range trans {
			if id != f.id {
				tr.Disconnect(raft.ServerAddress("inmem-" + f.id))
			}
		}
		_, f = restartCut(t, c, trans, f, func(cfg *Config) { cfg.CaughtUpThrough = tc.through })
		if cu := f.s.CatchUp(); cu.Done() != tc.caughtUp {
			t.Fatalf("handed over through %d (applied %d): CatchUp = %+v, want done %v", tc.through, applied, cu, tc.caughtUp)
		}
		if !tc.caughtUp {
			continue
		}
		// The leader's first AppendEntries reaches a server that knows no
		// leader yet: for a handed-over one that is no re-join. Nor is
		// the second, a heartbeat on the leader's other connection that
		// arrives before raft has taken the first in (it armed a wait on
		// the successor of an upgraded raft leader, which left every
		// ring for 150 ms).
		f.s.noteCommit(applied+5, true)
		f.s.noteCommit(applied+5, true)
		if cu := f.s.CatchUp(); !cu.Done() {
			t.Fatalf("the first leader after a hand-over armed a wait: CatchUp = %+v", cu)
		}
		// raft knows the leader: later AppendEntries say so.
		f.s.noteCommit(applied+5, false)
		// One after it lost its leader is a re-join.
		f.s.noteCommit(applied+5, true)
		if cu := f.s.CatchUp(); !cu.Waiting || cu.LeaderCommit != applied+5 {
			t.Fatalf("a re-join after the hand-over: CatchUp = %+v, want waiting for %d", cu, applied+5)
		}
	}
}

// TestHandedOverLeaderlessServerCatchesUpOnRejoin: a process cut off from
// the leader (no leader known) hands over; its successor starts caught up,
// as the old process was while it served, but the first leader it hears is
// a re-join, as it would have been for the old process: it waits to apply
// the leader's commit index. The successor of a cut-off node used to take
// that first leader for the hand-over's own and stayed ready, serving an
// old config, until raft's backed-off replication reached it.
func TestHandedOverLeaderlessServerCatchesUpOnRejoin(t *testing.T) {
	c, trans := catchCluster(t, 3, nil)
	c.put("cfg", []byte("v1"))
	l := c.leader(20 * time.Second)
	f := c.follower(l)
	waitFor(t, 10*time.Second, "follower applies v1", func() bool { d, _ := f.s.Get("cfg"); return d.Version == 1 })
	waitFor(t, 10*time.Second, "follower caught up", func() bool { return f.s.CatchUp().Done() })
	applied := f.s.AppliedIndex()
	c.kill(f)
	for id, tr := range trans {
		if id != f.id {
			tr.Disconnect(raft.ServerAddress("inmem-" + f.id))
		}
	}
	_, f = restartCut(t, c, trans, f, func(cfg *Config) {
		cfg.CaughtUpThrough, cfg.CaughtUpLeaderless = applied, true
	})
	if cu := f.s.CatchUp(); !cu.Done() {
		t.Fatalf("handed over through %d by a leaderless process: CatchUp = %+v, want done (as the old process was)", applied, cu)
	}
	f.s.noteCommit(applied+5, true)
	if cu := f.s.CatchUp(); !cu.Waiting || cu.LeaderCommit != applied+5 {
		t.Fatalf("the first leader after a leaderless hand-over: CatchUp = %+v, want waiting for %d (a re-join)", cu, applied+5)
	}
}

// TestStatusAppliedIndexOfARestartedServer: a server restarted on its data
// directory, before it hears a leader, reports as applied the index of the
// documents it restored and serves, not raft's own (0 without a snapshot):
// status said "applied 0" for a node serving a config of index 1220.
func TestStatusAppliedIndexOfARestartedServer(t *testing.T) {
	c, trans := catchCluster(t, 3, nil)
	c.put("cfg", []byte("v1"))
	l := c.leader(20 * time.Second)
	f := c.follower(l)
	waitFor(t, 10*time.Second, "follower applies v1", func() bool { d, _ := f.s.Get("cfg"); return d.Version == 1 })
	applied := f.s.AppliedIndex()
	c.kill(f)
	for id, tr := range trans {
		if id != f.id {
			tr.Disconnect(raft.ServerAddress("inmem-" + f.id))
		}
	}
	_, f = restartCut(t, c, trans, f, nil)
	if st := f.s.Status(); st.AppliedIndex < applied {
		t.Fatalf("restarted, before hearing a leader: status applied_index %d, the documents served are applied through %d", st.AppliedIndex, applied)
	}
}

// TestWritesWaitForStart: a write (and a consistent read) on a store that
// is opened but not started yet waits for Start instead of failing. A node
// serves its admin API and cluster port a moment before raft starts; on a
// graceful upgrade the successor takes them over while the old process's
// raft is already closed, and a config write arriving then got 503 "no
// quorum reachable from this node ... (consensus: store not running)" on
// a healthy cluster (seen with upgrades of one node 0.3 s apart).
func TestWritesWaitForStart(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultLocalConfig()
	cfg.ID, cfg.DataDir, cfg.BootstrapExpect = "a", dir, 1
	cfg.Logger = testLogger(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	put := make(chan error, 1)
	go func() {
		_, err := s.Put(ctxT(t, 30*time.Second), "cfg", []byte("v1"), -1)
		put <- err
	}()
	// Before Start the write either waits, as it should, or has failed.
	select {
	case err := <-put:
		t.Fatalf("Put before Start returned %v, want it to wait for Start", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-put; err != nil {
		t.Fatalf("Put that waited for Start: %v", err)
	}
	if d, ok, err := s.GetConsistent(ctxT(t, 30*time.Second), "cfg"); err != nil || !ok || string(d.Content) != "v1" {
		t.Fatalf("GetConsistent = %q, %v, %v", d.Content, ok, err)
	}

	// A store closed before it started ends the wait at once.
	cfg.DataDir = t.TempDir()
	closed, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := closed.Put(context.Background(), "cfg", []byte("v1"), -1)
		put <- err
	}()
	closed.Close()
	if err := <-put; !errors.Is(err, ErrClosed) {
		t.Fatalf("Put on a store closed before Start: %v, want ErrClosed", err)
	}
}
