package consensus

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A server that starts with raft state restores the documents it had
// applied and hands them to OnApply before any network (New), so the node
// serves its last config at once. That config may be behind: the cluster
// may have committed versions while this server was down, and the leader's
// replication to a server that failed backs off (raft doubles the wait up
// to about 10 s), so the missing entries may arrive seconds after start.
// Raft alone cannot say how far behind this server is: a follower's
// commit index is capped at its own last log index, so "applied >= commit"
// holds locally while it misses every entry the leader holds.
//
// So a started server is catching up until it has applied, and delivered
// to OnApply, every entry up to the leader's commit index as it first
// learns it: from the first AppendEntries after Start (voteGuard), or its
// own log when it leads. The same holds after it re-joins: an
// AppendEntries that arrives while it knew no leader (partitioned away,
// or its leader gone) arms the wait again, which counts from when it
// hears the leader's commit index (not before: every follower re-joins
// that way at an election). The wait is bounded by
// Timing.CatchUpTimeout (counted from Start or the re-join): a server cut
// off from the leader gives up and says so (CatchUp.GaveUp) instead of
// waiting for ever. A server that is the only voter of its configuration
// has nothing to catch up with, and one that takes its data directory over
// from a process that had caught up (Config.CaughtUpThrough) starts caught
// up: its first leader is no re-join.

// CatchUp says whether this server has caught up with the leader since it
// started or re-joined (Store.CatchUp).
type CatchUp struct {
	// Waiting: not caught up yet, and CatchUpTimeout has not passed.
	Waiting bool `json:"waiting"`
	// GaveUp: not caught up, and CatchUpTimeout has passed; the server
	// serves what it has.
	GaveUp bool `json:"gave_up,omitempty"`
	// Applied is the index applied here (raft's, or the last document's
	// restored at start when higher); LeaderCommit is the leader's
	// commit index this server waits for (0 while it has not heard it).
	Applied      uint64 `json:"applied"`
	LeaderCommit uint64 `json:"leader_commit"`
	// Since is when the wait started (Start, or the re-join); Timeout is
	// Timing.CatchUpTimeout.
	Since   time.Time     `json:"since"`
	Timeout time.Duration `json:"-"`
}

// Done reports whether there is nothing to wait for.
func (c CatchUp) Done() bool { return !c.Waiting && !c.GaveUp }

// catchUp is the Store's wait state; mu guards it.
type catchUp struct {
	mu      sync.Mutex
	waiting bool
	since   time.Time
	target  uint64
	// rejoin: armed by a re-join, not Start. Until the target is heard
	// such a wait does not count: every follower whose leader failed
	// re-joins the next leader, and would otherwise go not ready for an
	// AppendEntries round at each election.
	rejoin bool
	// handedOver: started caught up (Config.CaughtUpThrough) and raft
	// has known no leader since; AppendEntries until it knows one are no
	// re-join.
	handedOver bool
}

// armCatchUp starts a wait (Start, or a re-join) unless one runs.
func (s *Store) armCatchUp(rejoin bool) {
	c := &s.catch
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting {
		return
	}
	c.waiting, c.since, c.target, c.rejoin = true, s.cfg.Clock.Now(), 0, rejoin
}

// noteCommit is called by voteGuard for every AppendEntries before raft
// sees it. leaderless: this server knew no leader when it arrived (a
// re-join). The first leader commit index heard while waiting is the
// target.
func (s *Store) noteCommit(commit uint64, leaderless bool) {
	c := &s.catch
	c.mu.Lock()
	handedOver := c.handedOver
	if !leaderless {
		// raft knows the leader: a later leaderless one is a re-join.
		// Not at the first leaderless one: the leader's heartbeats and
		// its replication come on two connections, and both reach a
		// successor before raft has taken the first in (seen on an
		// upgrade of the raft leader: the successor waited to catch up
		// and left every ring for 150 ms).
		c.handedOver = false
	}
	c.mu.Unlock()
	if leaderless && !handedOver {
		s.armCatchUp(true)
	}
	s.noteTarget(commit)
}

// noteTarget makes commit the target of a wait that has none yet.
func (s *Store) noteTarget(commit uint64) {
	c := &s.catch
	c.mu.Lock()
	if c.waiting && c.target == 0 && commit > 0 {
		c.target = commit
	}
	c.mu.Unlock()
}

// NoteLeaderCommit gives a waiting server the leader's commit index
// learnt another way than raft (node asks the leader over its cluster
// RPC): raft's replication to a server that was down backs off, so the
// first AppendEntries may come seconds after start. Only the first index
// heard while waiting counts.
func (s *Store) NoteLeaderCommit(commit uint64) { s.noteTarget(commit) }

// CatchUp reports whether this server has caught up with the leader since
// it started or last re-joined: it has applied, and delivered to OnApply,
// every entry up to the leader's commit index as it first heard it (see
// above). Before Start it reports done.
func (s *Store) CatchUp() CatchUp {
	if !s.running() {
		return CatchUp{}
	}
	c := &s.catch
	c.mu.Lock()
	defer c.mu.Unlock()
	// raft's applied index starts at its last snapshot's; the FSM's is
	// what this server restored and serves.
	applied := max(s.raft.AppliedIndex(), s.AppliedIndex())
	if !c.waiting {
		return CatchUp{Applied: applied}
	}
	if c.target == 0 {
		switch {
		case s.raft.State() == raft.Leader:
			// Its log holds every committed entry (leader completeness).
			c.target = s.raft.LastIndex()
		case s.onlyVoter():
			c.waiting = false
			return CatchUp{Applied: applied}
		}
	}
	if c.target == 0 && c.rejoin {
		return CatchUp{Applied: applied}
	}
	if c.target > 0 && s.caughtUpThrough(c.target) {
		c.waiting = false
		s.log.Info("consensus: caught up with the leader", "index", c.target, "rejoin", c.rejoin,
			"after", s.cfg.Clock.Now().Sub(c.since).Round(time.Millisecond).String())
		return CatchUp{Applied: applied}
	}
	to := s.cfg.Timing.CatchUpTimeout
	gaveUp := s.cfg.Clock.Now().Sub(c.since) >= to
	return CatchUp{Waiting: !gaveUp, GaveUp: gaveUp, Applied: applied, LeaderCommit: c.target, Since: c.since, Timeout: to}
}

// caughtUpThrough reports whether raft applied index, the FSM holds every
// command up to it, and OnApply has been handed each of them.
func (s *Store) caughtUpThrough(index uint64) bool {
	return s.raft.AppliedIndex() >= index && s.lastCommand(index) == 0 && s.notifier.doneThrough(index)
}

// onlyVoter reports whether this server is the only voter of the
// configuration it holds: nothing can have been committed without it.
func (s *Store) onlyVoter() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters, self := 0, false
	for _, sv := range f.Configuration().Servers {
		if sv.Suffrage == raft.Voter {
			voters++
			self = self || string(sv.ID) == s.cfg.ID
		}
	}
	return voters == 1 && self
}
