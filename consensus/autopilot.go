package consensus

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/pingora-go/pingora-go/clock"
)

// apDelegate is autopilot's view of the application: the servers from
// Reconcile and health from the leader's heartbeat observations.
type apDelegate struct{ s *Store }

var _ autopilot.ApplicationIntegration = (*apDelegate)(nil)

// AutopilotConfig returns nil (autopilot idles) until Reconcile has been
// called once: before that every other server would look unknown.
func (d *apDelegate) AutopilotConfig() *autopilot.Config {
	s := d.s
	s.mu.Lock()
	ok := s.reconciled
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return &autopilot.Config{
		CleanupDeadServers:      true,
		LastContactThreshold:    s.cfg.Timing.LastContactThreshold,
		MaxTrailingLogs:         250,
		MinQuorum:               uint(s.cfg.MinQuorum),
		ServerStabilizationTime: s.cfg.Timing.ServerStabilizationTime,
	}
}

func (d *apDelegate) NotifyState(st *autopilot.State) { d.s.apState.Store(st) }

// FetchServerStats answers from the leader's own knowledge instead of an
// RPC to each server: a server whose heartbeats fail reports the time of
// its last contact; others are taken as current. Lag in log index is not
// visible this way (raft does not export replication progress); instead a
// server that reports Recovering (it started without raft state and has
// not caught up) is given no term, which makes it unhealthy, so a
// non-voter is promoted once it has caught up and then kept
// ServerStabilizationTime of good heartbeats.
func (d *apDelegate) FetchServerStats(_ context.Context, srvs map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	s := d.s
	term, last := s.raft.CurrentTerm(), s.raft.LastIndex()
	out := make(map[raft.ServerID]*autopilot.ServerStats, len(srvs))
	for id := range srvs {
		st := &autopilot.ServerStats{LastTerm: term, LastIndex: last, LastContact: s.sinceContact(string(id))}
		if s.reportsRecovering(string(id)) {
			st.LastTerm, st.LastIndex = 0, 0
		}
		out[id] = st
	}
	return out
}

// reportsRecovering reports whether membership last said that the server
// id is recovering.
func (s *Store) reportsRecovering(id string) bool {
	if id == s.cfg.ID {
		return s.Recovering()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.servers[id].Recovering
}

// sinceContact is how long ago the leader last reached a server whose
// heartbeats fail, or 0 when they do not.
func (s *Store) sinceContact(id string) time.Duration {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	pc, failing := s.lastContact[id]
	if !failing {
		return 0
	}
	if now.Sub(pc.seen) > s.staleFailure() {
		delete(s.lastContact, id) // a lost resumption: see staleFailure
		return 0
	}
	return now.Sub(pc.last)
}

// noteAnswered records that server id answered an AppendEntries now.
func (s *Store) noteAnswered(id string) {
	now := time.Now() // raft's LastContact is wall-clock time, so this is too
	s.mu.Lock()
	s.answeredAt[id] = now
	s.mu.Unlock()
}

// staleFailure is how long after the last failed heartbeat a failing
// entry is trusted. raft reports every failed heartbeat (at most
// HeartbeatTimeout/2 apart, plus one RPC of at most 2*transportTimeout),
// so a longer silence means heartbeats work again and the resumption was
// lost: the observer drops observations when its channel is full.
func (s *Store) staleFailure() time.Duration {
	return 2*transportTimeout + s.cfg.Timing.HeartbeatTimeout
}

// KnownServers lists every server in the raft configuration or from
// Reconcile. Servers in raft but unknown to membership are reported failed,
// so their removal also waits for DeadServerGrace.
func (d *apDelegate) KnownServers() map[raft.ServerID]*autopilot.Server {
	s := d.s
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	servers, _ := s.knownServers()
	out := map[raft.ServerID]*autopilot.Server{}
	for _, sv := range servers {
		out[raft.ServerID(sv.ID)] = apServer(sv)
	}
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range f.Configuration().Servers {
		if _, ok := out[rs.ID]; !ok {
			if _, seen := s.downSince[string(rs.ID)]; !seen {
				s.downSince[string(rs.ID)] = now
			}
			out[rs.ID] = apServer(Server{ID: string(rs.ID), Addr: string(rs.Address)})
		}
	}
	return out
}

// RemoveFailedServer removes a server that left at once and a failed one
// once DeadServerGrace has passed since it was first seen down; autopilot
// asks again every reconcile interval. Autopilot has already capped the
// removals so that a majority of voters stays.
func (d *apDelegate) RemoveFailedServer(srv *autopilot.Server) {
	s := d.s
	s.mu.Lock()
	since, ok := s.downSince[string(srv.ID)]
	s.mu.Unlock()
	due := srv.NodeStatus == autopilot.NodeLeft ||
		(ok && s.cfg.Clock.Now().Sub(since) >= s.cfg.Timing.DeadServerGrace)
	if !due || s.stopped.Load() {
		return
	}
	s.bg.Add(1)
	go func() { // autopilot requires this callback to return at once
		defer s.bg.Done()
		if err := s.raft.RemoveServer(srv.ID, 0, 0).Error(); err != nil {
			s.log.Warn("consensus: remove server", "id", srv.ID, "err", err)
			return
		}
		s.log.Info("consensus: removed server", "id", srv.ID, "status", srv.NodeStatus)
	}()
}

func apServer(sv Server) *autopilot.Server {
	st := autopilot.NodeFailed
	switch {
	case sv.Left:
		st = autopilot.NodeLeft
	case sv.Alive:
		st = autopilot.NodeAlive
	}
	return &autopilot.Server{
		ID: raft.ServerID(sv.ID), Name: sv.ID, Address: raft.ServerAddress(sv.Addr),
		NodeStatus: st, NodeType: autopilot.NodeVoter, RaftVersion: raft.ProtocolVersionMax,
	}
}

// promoter is autopilot's StablePromoter with a cap on voters: stable
// non-voters are promoted in ID order while fewer than max voters exist.
// It keeps its own record of how long each server has been healthy:
// raft-autopilot v0.3.0 never moves a known server's StableSince (its
// previous-health pointer aliases the new value), so a server that was
// healthy once, then down or recovering, would count as stable at once
// when healthy again, and a server that restarted with an empty data dir
// would be promoted right after it caught up.
type promoter struct {
	autopilot.StablePromoter
	max   int
	clock clock.Clock

	mu           sync.Mutex
	healthySince map[raft.ServerID]time.Time // since when each server is healthy, this leadership
}

var _ autopilot.Promoter = (*promoter)(nil)

func newPromoter(max int, clk clock.Clock) *promoter {
	return &promoter{max: max, clock: clk, healthySince: map[raft.ServerID]time.Time{}}
}

// reset forgets every server's health: a new leadership starts over.
func (p *promoter) reset() {
	p.mu.Lock()
	clear(p.healthySince)
	p.mu.Unlock()
}

func (p *promoter) CalculatePromotionsAndDemotions(c *autopilot.Config, st *autopilot.State) autopilot.RaftChanges {
	now := p.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var changes autopilot.RaftChanges
	voters := 0
	for id, sv := range st.Servers {
		if sv.HasVotingRights() || sv.State == autopilot.RaftStaging {
			voters++
		}
		if !sv.Health.Healthy {
			delete(p.healthySince, id)
			continue
		}
		since, ok := p.healthySince[id]
		if !ok {
			since = now
			p.healthySince[id] = now
		}
		if sv.State == autopilot.RaftNonVoter && now.Sub(since) >= c.ServerStabilizationTime {
			changes.Promotions = append(changes.Promotions, id)
		}
	}
	for id := range p.healthySince {
		if _, ok := st.Servers[id]; !ok {
			delete(p.healthySince, id)
		}
	}
	sort.Slice(changes.Promotions, func(i, j int) bool { return changes.Promotions[i] < changes.Promotions[j] })
	room := max(p.max-voters, 0)
	if len(changes.Promotions) > room {
		changes.Promotions = changes.Promotions[:room]
	}
	return changes
}

// leaderLoop runs autopilot while this server leads.
func (s *Store) leaderLoop(ctx context.Context) {
	ch := s.raft.LeaderCh()
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-ch:
			s.leadershipChanged(ctx, leader)
		}
	}
}

func (s *Store) leadershipChanged(ctx context.Context, leader bool) {
	if leader {
		s.mu.Lock()
		clear(s.lastContact)
		// removedAt is kept: a removed server's replication outlives the
		// term (see observe), and its reports must stay ignored when this
		// server leads again.
		s.mu.Unlock()
		s.promoter.reset()
		s.ap.Start(ctx)
		s.Kick()
		return
	}
	<-s.ap.Stop()
	s.apState.Store(nil)
}

func isHeartbeatObservation(o *raft.Observation) bool {
	switch o.Data.(type) {
	case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.PeerObservation:
		return true
	}
	return false
}

// peerContact is what the leader knows of a follower whose heartbeats fail.
type peerContact struct {
	last time.Time // its last contact, as raft reported it
	seen time.Time // when the latest failure was observed
}

// observeLoop tracks which followers' heartbeats fail, for FetchServerStats.
func (s *Store) observeLoop(ctx context.Context, ch <-chan raft.Observation) {
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-ch:
			s.observe(o)
		}
	}
}

// observe records a failed heartbeat and forgets it when heartbeats resume
// or when raft starts or stops replicating to the peer.
//
// A server removed from the configuration (after a graceful leave, or
// DeadServerGrace after a crash) and later added back gets a new
// replication, which reports failures but never a resumption; the stopped
// replication meanwhile keeps reporting failed heartbeats for up to about
// a minute (raft's replication backoff) with its old last contact. Without
// PeerObservation and removedAt the returning server looked unhealthy for
// ever and was never promoted (issue 12). The stopped replication also
// outlives the leader's term: removedAt is kept when this server leads
// again (a leader that missed its lease under load and won the next
// election counted those reports, and the returning server, whose new
// replication never failed, stayed unhealthy until they ended plus
// staleFailure: TestRemovedServerReturnsAfterReelection).
func (s *Store) observe(o raft.Observation) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch v := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		id := string(v.PeerID)
		if rm, ok := s.removedAt[id]; ok && v.LastContact.Before(rm) {
			return // from the replication stopped when the server was removed
		}
		if at, ok := s.answeredAt[id]; ok && v.LastContact.Add(s.cfg.Timing.HeartbeatTimeout).Before(at) {
			// The server answered well after the last contact this report
			// counts from: the report is from another replication to it,
			// stopped and still backing off (one of an earlier term, when
			// another leader removed the server meanwhile, so removedAt
			// has no record of it here). A failing replication's own
			// reports count from its last answer.
			return
		}
		pc, ok := s.lastContact[id]
		if !ok {
			pc.last = v.LastContact
			if pc.last.IsZero() {
				pc.last = now.Add(-s.cfg.Timing.LastContactThreshold)
			}
		}
		pc.seen = now
		s.lastContact[id] = pc
	case raft.ResumedHeartbeatObservation:
		delete(s.lastContact, string(v.PeerID))
	case raft.PeerObservation:
		delete(s.lastContact, string(v.Peer.ID))
		if v.Removed {
			// raft's LastContact is wall-clock time, so this is too.
			s.removedAt[string(v.Peer.ID)] = time.Now()
		}
	}
}
