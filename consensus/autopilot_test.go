package consensus

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/pingora-go/pingora-go/clock"
)

func TestAutopilot(t *testing.T) {
	const grace = 1500 * time.Millisecond
	mod := func(cfg *Config) {
		cfg.Timing.DeadServerGrace = grace
		cfg.MinQuorum = 4
	}
	c := newCluster(t, 5, 5, mod)
	c.reconcile()
	l := c.put("cfg", []byte("v1"))

	// A 6th server joins as a non-voter, catches up, and stays a non-voter
	// once stable, because 5 voters is the cap.
	n6 := newNode(t, "n6", t.TempDir(), 5, mod)
	c.add(n6)
	c.reconcile()
	waitFor(t, 10*time.Second, "n6 caught up", func() bool { _, ok := n6.s.Get("cfg"); return ok })
	stab := l.cfg.Timing.ServerStabilizationTime
	waitFor(t, 15*time.Second, "n6 healthy and stable past the stabilization time", func() bool {
		c.reconcile() // gossip tells the leader that n6 has caught up
		for _, p := range l.s.Status().NonVoters {
			if p.ID == "n6" && p.Health == "healthy" && time.Since(p.StableSince) > stab+5*l.cfg.Timing.ReconcileInterval {
				return true
			}
		}
		return false
	})
	if v, nv := voters(l); len(v) != 5 || !slices.Equal(nv, []string{"n6"}) {
		t.Fatalf("voters %v nonvoters %v, want 5 voters and n6 a non-voter", v, nv)
	}
	if n6.s.Bootstrapped() {
		t.Fatal("n6 bootstrapped")
	}

	// A dead voter is removed after the grace period; n6 takes its seat.
	dead := c.follower(l)
	start := time.Now()
	c.kill(dead)
	took := waitFor(t, 15*time.Second, "dead voter removed", func() bool {
		v, nv := voters(l)
		return !slices.Contains(v, dead.id) && !slices.Contains(nv, dead.id)
	})
	t.Logf("dead server %s removed %s after failure (grace %s)", dead.id, took, grace)
	if el := time.Since(start); el < grace {
		t.Fatalf("removed after %s, before the grace period %s", el, grace)
	}
	waitFor(t, 15*time.Second, "n6 promoted", func() bool {
		v, _ := voters(l)
		return len(v) == 5 && slices.Contains(v, "n6")
	})

	// A server that leaves gracefully is removed at once.
	leaver := c.follower(l)
	leaver.s.Shutdown()
	c.left[leaver.id] = true
	c.reconcile()
	took = waitFor(t, 10*time.Second, "left server removed", func() bool {
		v, _ := voters(l)
		return !slices.Contains(v, leaver.id)
	})
	t.Logf("left server %s removed after %s", leaver.id, took)
	if took >= grace {
		t.Fatalf("left server removed after %s, want before the grace period %s", took, grace)
	}

	// 4 voters and MinQuorum 4: another dead voter is never removed, and the
	// 3 others still commit.
	dead2 := c.follower(l)
	c.kill(dead2)
	start = time.Now()
	waitFor(t, 10*time.Second, "well past the grace period", func() bool {
		return time.Since(start) > grace+10*l.cfg.Timing.ReconcileInterval
	})
	if v, _ := voters(l); len(v) != 4 || !slices.Contains(v, dead2.id) {
		t.Fatalf("voters %v: %s removed below MinQuorum", v, dead2.id)
	}
	// The 3 commit: a write through whichever of them leads now (on a
	// loaded machine the leader may have stepped down meanwhile, and a
	// write under way then fails with "leadership lost").
	var werr error
	waitFor(t, 30*time.Second, "a write with 3 of 4 voters", func() bool {
		l = c.leader(20 * time.Second)
		_, werr = l.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("v2"), -1)
		if werr != nil {
			t.Logf("write with 3 of 4 voters: %v; again", werr)
		}
		return werr == nil
	})
	st := l.s.Status()
	if st.Healthy == nil || st.FailureTolerance == nil {
		t.Fatalf("leader status lacks autopilot health: %+v", st)
	}
	t.Logf("status: %+v", st)
}

func TestPromoterCapsVoters(t *testing.T) {
	now := time.Now()
	st := &autopilot.State{Servers: map[raft.ServerID]*autopilot.ServerState{}}
	add := func(id string, rs autopilot.RaftState) {
		st.Servers[raft.ServerID(id)] = &autopilot.ServerState{
			Server: autopilot.Server{ID: raft.ServerID(id)}, State: rs,
			Health: autopilot.ServerHealth{Healthy: true, StableSince: now.Add(-time.Hour)},
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		add(id, autopilot.RaftVoter)
	}
	for _, id := range []string{"f", "d", "e"} {
		add(id, autopilot.RaftNonVoter)
	}
	ch := newPromoter(5, clock.Real{}).CalculatePromotionsAndDemotions(&autopilot.Config{}, st)
	if !slices.Equal(ch.Promotions, []raft.ServerID{"d", "e"}) {
		t.Fatalf("promotions = %v, want [d e]", ch.Promotions)
	}
	ch = newPromoter(3, clock.Real{}).CalculatePromotionsAndDemotions(&autopilot.Config{}, st)
	if len(ch.Promotions) != 0 {
		t.Fatalf("promotions at cap = %v", ch.Promotions)
	}
}

// TestPromoterWaitsForStableHealth: a non-voter is promoted only once it
// has been healthy for ServerStabilizationTime in a row, counted by the
// promoter itself: autopilot v0.3.0 leaves StableSince where it was when
// it first saw the server, so here it claims an hour of stability all
// along, while the server was unhealthy (recovering) in between.
func TestPromoterWaitsForStableHealth(t *testing.T) {
	clk := clock.NewFake(time.Now())
	cfg := &autopilot.Config{ServerStabilizationTime: 10 * time.Second}
	w := &autopilot.ServerState{Server: autopilot.Server{ID: "w"}, State: autopilot.RaftNonVoter,
		Health: autopilot.ServerHealth{Healthy: false, StableSince: clk.Now().Add(-time.Hour)}}
	st := &autopilot.State{Servers: map[raft.ServerID]*autopilot.ServerState{
		"a": {Server: autopilot.Server{ID: "a"}, State: autopilot.RaftLeader, Health: autopilot.ServerHealth{Healthy: true}},
		"w": w,
	}}
	p := newPromoter(5, clk)
	step := func(d time.Duration) []raft.ServerID {
		clk.Advance(d)
		return p.CalculatePromotionsAndDemotions(cfg, st).Promotions
	}
	if got := step(time.Minute); len(got) != 0 {
		t.Fatalf("unhealthy w promoted: %v", got)
	}
	w.Health.Healthy = true
	if got := step(0); len(got) != 0 {
		t.Fatalf("w promoted as soon as it turned healthy: %v", got)
	}
	if got := step(9 * time.Second); len(got) != 0 {
		t.Fatalf("w promoted after 9s of health: %v", got)
	}
	w.Health.Healthy = false
	step(time.Second)
	w.Health.Healthy = true
	if got := step(0); len(got) != 0 {
		t.Fatalf("w promoted at once after a relapse: %v", got)
	}
	if got := step(10 * time.Second); !slices.Equal(got, []raft.ServerID{"w"}) {
		t.Fatalf("promotions after 10s of health = %v, want [w]", got)
	}
	p.reset()
	if got := step(0); len(got) != 0 {
		t.Fatalf("w promoted at once by a new leadership: %v", got)
	}
}

// TestRemovedServerReturnsAsVoter: a server whose heartbeats failed, that
// was removed (after the grace period when it failed, at once when it
// left) and that restarts on its data dir later than LastContactThreshold
// is added back and promoted to voter. Before issue 12 the leader kept the
// failed-heartbeat record of the stopped replication, so the returning
// server stayed an unhealthy non-voter with its last contact growing.
func TestRemovedServerReturnsAsVoter(t *testing.T) {
	for _, tc := range []struct {
		name string
		left bool
	}{{"failed", false}, {"left", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3, 3, func(cfg *Config) { cfg.Timing.DeadServerGrace = 500 * time.Millisecond })
			c.reconcile()
			l := c.leader(20 * time.Second)
			f := c.follower(l)
			// A server with state but without the cluster ID is never
			// added back (clusterid.go): let the ID reach it first.
			waitFor(t, 10*time.Second, f.id+" has the cluster ID", func() bool { return f.s.ClusterID() != "" })
			down := time.Now()
			if tc.left {
				f.s.Shutdown()
			} else {
				c.kill(f)
			}
			waitFor(t, 15*time.Second, "leader saw failed heartbeats", func() bool {
				l.s.mu.Lock()
				defer l.s.mu.Unlock()
				_, ok := l.s.lastContact[f.id]
				return ok
			})
			if tc.left {
				c.left[f.id] = true
				c.reconcile()
			}
			waitFor(t, 15*time.Second, f.id+" removed", func() bool {
				v, nv := voters(l)
				return !slices.Contains(v, f.id) && !slices.Contains(nv, f.id)
			})
			threshold := l.cfg.Timing.LastContactThreshold
			waitFor(t, 10*time.Second, "down for longer than LastContactThreshold", func() bool {
				return time.Since(down) > 2*threshold
			})
			restartOnNewPort(t, c, f)
			delete(c.left, f.id)
			c.reconcile()
			took := waitFor(t, 15*time.Second, f.id+" a voter again and the leader healthy", func() bool {
				st := l.s.Status()
				return slices.Contains(voterIDs(l), f.id) && st.Healthy != nil && *st.Healthy
			})
			t.Logf("%s back as a voter %s after its restart (stabilization %s)", f.id, took, l.cfg.Timing.ServerStabilizationTime)
		})
	}
}

func voterIDs(l *tnode) []string { v, _ := voters(l); return v }

// restartOnNewPort starts the down server f again on its data, on a new
// port (as a restarted container), and marks it up.
func restartOnNewPort(t *testing.T, c *cluster, f *tnode) {
	t.Helper()
	s, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Start(ctxT(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	f.s = s
	delete(c.down, f.id)
}

// TestRemovedServerReturnsAfterReelection: a failed server's replication,
// once the server is removed, lives on for raft's replication backoff (as
// long again as the server was down, up to about 40 s) and its heartbeats
// keep reporting failures with the old last contact. The leader then
// loses and wins leadership again (a missed lease under load does it) and
// the server comes back at a new address: its new replication never
// fails, so the old one's reports must not make it unhealthy. Before, the
// new leadership forgot the removal, the reports counted, nothing
// resumed, and the server stayed an unhealthy non-voter until the reports
// ended plus staleFailure (20 s): cmd/pingora-node's
// TestRestartedVotersReturn/joiners timed out so under load.
func TestRemovedServerReturnsAfterReelection(t *testing.T) {
	c := newCluster(t, 3, 3, func(cfg *Config) { cfg.Timing.DeadServerGrace = 2 * time.Second })
	c.reconcile()
	l := c.leader(20 * time.Second)
	f := c.follower(l)
	waitFor(t, 10*time.Second, f.id+" has the cluster ID", func() bool { return f.s.ClusterID() != "" })
	c.kill(f)
	waitFor(t, 15*time.Second, f.id+" removed", func() bool {
		v, nv := voters(l)
		return !slices.Contains(v, f.id) && !slices.Contains(nv, f.id)
	})
	l.s.leadershipChanged(context.Background(), true) // as after a step-down and a new win
	restartOnNewPort(t, c, f)
	c.reconcile()
	took := waitFor(t, 10*time.Second, f.id+" a voter again and the leader healthy", func() bool {
		st := l.s.Status()
		return slices.Contains(voterIDs(l), f.id) && st.Healthy != nil && *st.Healthy
	})
	t.Logf("%s back as a voter %s after its restart", f.id, took)
}

// TestObserveFailures is the bookkeeping of failed heartbeats: resumption
// and a new replication forget a failure, a stopped replication's late
// reports are ignored, and a failure nobody repeats goes stale.
func TestObserveFailures(t *testing.T) {
	clk := clock.NewFake(time.Now().Add(time.Hour)) // ahead of raft's wall-clock last contacts
	s := &Store{
		cfg:         Config{Clock: clk, Timing: FastTiming()},
		lastContact: map[string]peerContact{}, removedAt: map[string]time.Time{}, answeredAt: map[string]time.Time{},
	}
	failed := func(id string, lc time.Time) raft.Observation {
		return raft.Observation{Data: raft.FailedHeartbeatObservation{PeerID: raft.ServerID(id), LastContact: lc}}
	}
	peer := func(id string, removed bool) raft.Observation {
		return raft.Observation{Data: raft.PeerObservation{Removed: removed, Peer: raft.Server{ID: raft.ServerID(id)}}}
	}
	failing := func(id string) bool { _, ok := s.lastContact[id]; return ok }
	old := time.Now().Add(-time.Minute)

	s.observe(failed("a", old))
	if !failing("a") || s.lastContact["a"].last != old {
		t.Fatalf("failure not recorded: %+v", s.lastContact)
	}
	s.observe(raft.Observation{Data: raft.ResumedHeartbeatObservation{PeerID: "a"}})
	if failing("a") {
		t.Fatal("resumption did not forget the failure")
	}
	s.observe(failed("a", old))
	s.observe(peer("a", true))
	if failing("a") {
		t.Fatal("removal did not forget the failure")
	}
	s.observe(peer("a", false))
	s.observe(failed("a", old))
	if failing("a") {
		t.Fatal("a late report of the stopped replication counted")
	}
	s.observe(failed("a", time.Now()))
	if !failing("a") {
		t.Fatal("a failure of the new replication was ignored")
	}
	if d := s.sinceContact("a"); d <= 0 {
		t.Fatalf("failing server reported last contact %s ago", d)
	}
	clk.Advance(s.staleFailure() + time.Second)
	if d := s.sinceContact("a"); d != 0 || failing("a") {
		t.Fatalf("a failure nobody repeated for %s still counts: %s", s.staleFailure(), d)
	}

	// A replication of an earlier term, whose removal this server did not
	// see (another leader removed and re-added b): its reports count from
	// long before b's answers to this server's replication.
	s.noteAnswered("b")
	s.observe(failed("b", old))
	if failing("b") {
		t.Fatal("a report counting from before the server's latest answer counted")
	}
	s.observe(failed("b", time.Now().Add(-s.cfg.Timing.HeartbeatTimeout/2)))
	if !failing("b") {
		t.Fatal("a failure counting from the server's latest answer was ignored")
	}
}

// TestRemoveServer: a follower refuses with the leader's name; the leader
// removes a dead server, and reports an unknown one as absent.
func TestRemoveServer(t *testing.T) {
	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	l := c.leader(20 * time.Second)
	f := c.follower(l)
	var nl *NotLeaderError
	if _, err := f.s.RemoveServer(ctxT(t, 5*time.Second), "n9"); !errors.As(err, &nl) || nl.LeaderID != l.id {
		t.Fatalf("RemoveServer on a follower = %v, want NotLeaderError naming %s", err, l.id)
	}
	c.kill(f)
	if ok, err := l.s.RemoveServer(ctxT(t, 5*time.Second), f.id); !ok || err != nil {
		t.Fatalf("RemoveServer(%s) = %v, %v", f.id, ok, err)
	}
	if v, nv := voters(l); slices.Contains(v, f.id) || slices.Contains(nv, f.id) {
		t.Fatalf("%s still in the configuration: %v %v", f.id, v, nv)
	}
	if ok, err := l.s.RemoveServer(ctxT(t, 5*time.Second), f.id); ok || err != nil {
		t.Fatalf("second RemoveServer = %v, %v, want false, nil", ok, err)
	}
	if _, err := l.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("x"), -1); err != nil {
		t.Fatalf("write with 2 of 2 voters: %v", err)
	}
}

// TestRemovedServerNotAddedBack: a reconcile step that listed the servers
// while a follower was alive, and reads the configuration after the
// follower failed and was removed, must not add it back as a non-voter,
// nor demote the other follower as a voter that lost its state (its first
// list still said recovering). A leader's first step waits for the
// cluster ID to commit in between: TestRemoveServer once found the removed
// server back as a non-voter.
func TestRemovedServerNotAddedBack(t *testing.T) {
	var mu sync.Mutex
	var armed string // the store whose step pauses
	paused, release, next := make(chan struct{}), make(chan struct{}), make(chan struct{})
	pauses := 0
	testHookStepListed = func(id string) {
		mu.Lock()
		if id != armed {
			mu.Unlock()
			return
		}
		pauses++
		n := pauses
		mu.Unlock()
		switch n {
		case 1: // the step to hold, with the follower alive in its list
			close(paused)
			<-release
		case 2: // the next step: the held one is over
			close(next)
		}
	}
	t.Cleanup(func() { testHookStepListed = nil }) // after the stores close
	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	l := c.leader(20 * time.Second)
	f := c.follower(l)
	mu.Lock()
	armed = l.id
	mu.Unlock()
	l.s.Kick()
	wait := func(ch chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
		}
	}
	wait(paused, "the leader's step to list the servers")
	c.kill(f)
	if ok, err := l.s.RemoveServer(ctxT(t, 5*time.Second), f.id); !ok || err != nil {
		close(release)
		t.Fatalf("RemoveServer(%s) = %v, %v", f.id, ok, err)
	}
	close(release)
	wait(next, "the held step to end")
	// Nor may it act on the rest of its stale list: the third server,
	// recovering when first listed, has caught up and stays a voter.
	if v, nv := voters(l); len(v) != 2 || slices.Contains(v, f.id) || len(nv) != 0 {
		t.Fatalf("voters %v, non-voters %v; want the two live servers as voters, %s gone", v, nv, f.id)
	}
}

// TestLeavingServerNotAddedBack: "pingora-node leave" has the leader
// remove a server that is still alive in gossip (it drains and leaves
// gossip only once its removal is answered). The leader's next steps
// still list it alive, and must not add it back: they did, as a
// non-voter that autopilot promoted at once (its health had been stable
// for long), which left a 3-server cluster with a fourth, departed voter
// and no failure tolerance until the dead-server grace ran out. Once
// membership reports it gone, a server that comes back is added as any
// joiner.
func TestLeavingServerNotAddedBack(t *testing.T) {
	var steps atomic.Int64
	var leaderID atomic.Pointer[string]
	testHookStepListed = func(id string) {
		if p := leaderID.Load(); p != nil && *p == id {
			steps.Add(1)
		}
	}
	t.Cleanup(func() { testHookStepListed = nil }) // after the stores close
	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	l := c.leader(20 * time.Second)
	id := l.id
	leaderID.Store(&id)
	f := c.follower(l)
	// A settled cluster: without the cluster ID, f would come back as a
	// server that may hold another cluster's state.
	waitFor(t, 10*time.Second, "every server to hold the cluster ID", func() bool {
		for _, n := range c.nodes {
			if n.s.ClusterID() == "" || n.s.ClusterID() != l.s.ClusterID() {
				return false
			}
		}
		return true
	})
	if ok, err := l.s.RemoveServer(ctxT(t, 5*time.Second), f.id); !ok || err != nil {
		t.Fatalf("RemoveServer(%s) = %v, %v", f.id, ok, err)
	}
	// Gossip still shows it alive (draining); two whole steps run.
	c.reconcile()
	from := steps.Load()
	waitFor(t, 10*time.Second, "two reconcile steps on the leader", func() bool {
		l.s.Kick()
		return steps.Load() >= from+2
	})
	if v, nv := voters(l); slices.Contains(v, f.id) || slices.Contains(nv, f.id) {
		t.Fatalf("%s, removed on request while alive in gossip, was added back: voters %v, non-voters %v", f.id, v, nv)
	}
	// It leaves gossip, then comes back: a joiner again.
	c.left[f.id] = true
	c.reconcile()
	delete(c.left, f.id)
	c.reconcile()
	waitFor(t, 10*time.Second, f.id+" added back once it returned", func() bool {
		l.s.Kick()
		v, nv := voters(l)
		return slices.Contains(v, f.id) || slices.Contains(nv, f.id)
	})
}

// TestStatusAppliedReachesCommit: /status's applied index was the last
// document command the FSM applied, so after a configuration change (a
// server removed, a joiner added) "pingora-node status" showed "commit
// 17, applied 6" on every node, a node that looked 11 entries behind. It
// is raft's applied index: in a settled cluster, the commit index.
func TestStatusAppliedReachesCommit(t *testing.T) {
	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	l := c.put("cfg", []byte("x"))
	f := c.follower(l)
	c.kill(f)
	if ok, err := l.s.RemoveServer(ctxT(t, 5*time.Second), f.id); !ok || err != nil {
		t.Fatalf("RemoveServer(%s) = %v, %v", f.id, ok, err)
	}
	var st Status
	waitFor(t, 10*time.Second, "the leader's applied index to reach its commit index after the removal", func() bool {
		st = l.s.Status()
		return st.CommitIndex > 0 && st.CommitIndex == st.LastIndex && st.AppliedIndex == st.CommitIndex
	})
	if st.AppliedIndex <= l.s.AppliedIndex() {
		t.Fatalf("applied %d, FSM's last document %d: the removal is an entry after it", st.AppliedIndex, l.s.AppliedIndex())
	}
}

// TestStatusSaysWhenDownServerGoes: the leader's status gives, for a voter
// membership sees down, when it is due to be taken out of raft
// (RemoveAt: DeadServerGrace after it was first seen down); the voters
// that are up have none. Status said only "unhealthy, last contact 1m4s"
// while the operator waited for a stopped node's removal.
func TestStatusSaysWhenDownServerGoes(t *testing.T) {
	const grace = time.Hour
	c := newCluster(t, 3, 3, func(cfg *Config) { cfg.Timing.DeadServerGrace = grace })
	c.reconcile()
	l := c.put("cfg", []byte("v1"))
	dead := c.follower(l)
	before := l.cfg.Clock.Now()
	c.kill(dead)
	after := l.cfg.Clock.Now()
	for _, p := range l.s.Status().Voters {
		switch {
		case p.ID == dead.id && (p.RemoveAt.Before(before.Add(grace)) || p.RemoveAt.After(after.Add(grace))):
			t.Errorf("down voter %s: remove_at %v, want between %v and %v", p.ID, p.RemoveAt, before.Add(grace), after.Add(grace))
		case p.ID != dead.id && !p.RemoveAt.IsZero():
			t.Errorf("voter %s is up, remove_at %v", p.ID, p.RemoveAt)
		}
	}
}

// TestSettledState: autopilot's first state of a new leadership, computed
// before the leader knew its servers, rated every server unhealthy, the
// leader too, and status printed "UNHEALTHY: failure tolerance 0;
// unhealthy: voter n1, ..., voter n4" for a second after a kill -9 of the
// previous leader. Such a state is not reported; one that rates the
// leader healthy is.
func TestSettledState(t *testing.T) {
	state := func(leaderHealthy bool) *autopilot.State {
		return &autopilot.State{Healthy: false, Servers: map[raft.ServerID]*autopilot.ServerState{
			"n2": {Server: autopilot.Server{ID: "n2"}, State: autopilot.RaftLeader, Health: autopilot.ServerHealth{Healthy: leaderHealthy}},
			"n3": {Server: autopilot.Server{ID: "n3"}, State: autopilot.RaftVoter, Health: autopilot.ServerHealth{Healthy: false}},
		}}
	}
	if got := settled(state(false), "n2"); got != nil {
		t.Fatalf("a state that rates the leader unhealthy was kept: %+v", got)
	}
	if st := state(true); settled(st, "n2") != st {
		t.Fatal("a state that rates the leader healthy (n3 down) was dropped")
	}
	if st := state(false); settled(st, "n9") != st {
		t.Fatal("a state without this server was dropped")
	}
	if settled(nil, "n2") != nil {
		t.Fatal("nil")
	}
}
