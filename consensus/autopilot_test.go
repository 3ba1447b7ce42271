package consensus

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

func TestAutopilot(t *testing.T) {
	const grace = 1500 * time.Millisecond
	mod := func(cfg *Config) {
		cfg.Timing.DeadServerGrace = grace
		cfg.MinQuorum = 4
	}
	c := newCluster(t, 5, 5, mod)
	c.reconcile()
	l := c.leader(20 * time.Second)
	if _, err := l.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("v1"), -1); err != nil {
		t.Fatal(err)
	}

	// A 6th server joins as a non-voter, catches up, and stays a non-voter
	// once stable, because 5 voters is the cap.
	n6 := newNode(t, "n6", t.TempDir(), 5, mod)
	c.add(n6)
	c.reconcile()
	waitFor(t, 10*time.Second, "n6 caught up", func() bool { _, ok := n6.s.Get("cfg"); return ok })
	stab := l.cfg.Timing.ServerStabilizationTime
	waitFor(t, 15*time.Second, "n6 healthy and stable past the stabilization time", func() bool {
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
	if _, err := l.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("v2"), -1); err != nil {
		t.Fatalf("write with 3 of 4 voters: %v", err)
	}
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
	ch := (&promoter{max: 5}).CalculatePromotionsAndDemotions(&autopilot.Config{}, st)
	if !slices.Equal(ch.Promotions, []raft.ServerID{"d", "e"}) {
		t.Fatalf("promotions = %v, want [d e]", ch.Promotions)
	}
	ch = (&promoter{max: 3}).CalculatePromotionsAndDemotions(&autopilot.Config{}, st)
	if len(ch.Promotions) != 0 {
		t.Fatalf("promotions at cap = %v", ch.Promotions)
	}
}
