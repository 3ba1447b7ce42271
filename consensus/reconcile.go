package consensus

import (
	"context"
	"slices"
	"sort"

	"github.com/hashicorp/raft"
)

// Server is a server as membership sees it; node translates membership
// members into these and passes the full list to Reconcile.
type Server struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // raft address
	// Alive is false while membership suspects or has declared it failed.
	Alive bool `json:"alive"`
	// Left is true once it left gracefully; it is removed from raft at once.
	Left bool `json:"left"`
	// HasState is what the server reported from its own HasState, through
	// gossip metadata; no server bootstraps while any known server has
	// state, since a cluster already exists.
	HasState bool `json:"has_state"`
	// ClusterID is what the server reported from its own ClusterID; a
	// server with another cluster's ID is never added ("" is a new
	// server, or one from before cluster IDs).
	ClusterID string `json:"cluster_id,omitempty"`
	// Recovering is what the server reported from its own Recovering: it
	// started without raft state and has not caught up yet. The leader
	// demotes such a voter to a non-voter and promotes it only once it
	// has caught up (recovery.go).
	Recovering bool `json:"recovering,omitempty"`
}

// Reconcile records the servers membership knows (the full list, this
// server included or not) and schedules a reconcile step. It never blocks,
// so it may be called from membership event handlers.
func (s *Store) Reconcile(servers []Server) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	next := make(map[string]Server, len(servers))
	for _, sv := range servers {
		next[sv.ID] = sv
		if !sv.Recovering {
			delete(s.formation, sv.ID)
		}
		if sv.Alive && !sv.Left {
			delete(s.downSince, sv.ID)
		} else if _, ok := s.downSince[sv.ID]; !ok {
			s.downSince[sv.ID] = now
		}
	}
	for id := range s.leaving {
		if sv, ok := next[id]; !ok || !sv.Alive || sv.Left {
			delete(s.leaving, id) // gone: if it comes back, it is a joiner
		}
	}
	s.servers = next
	s.reconciled = true
	s.mu.Unlock()
	s.Kick()
}

// Kick schedules a reconcile step without new information.
func (s *Store) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Store) reconcileLoop(ctx context.Context) {
	t := s.cfg.Clock.NewTicker(s.cfg.Timing.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-t.C():
		}
		s.step()
	}
}

// step bootstraps when due and, on the leader, adds joiners and triggers
// removal of servers that left. Promotions, demotions and dead-server
// removal are autopilot's, on its own loop.
func (s *Store) step() {
	s.caughtUp()
	servers, self := s.knownServers()
	if testHookStepListed != nil {
		testHookStepListed(s.cfg.ID)
	}
	if s.maybeBootstrap(servers, self) {
		return
	}
	if s.raft.State() != raft.Leader {
		return
	}
	s.ensureClusterID()
	own := s.ClusterID()
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	conf := f.Configuration()
	// The servers are listed again, after the configuration: a server
	// that failed and was removed while this step waited (ensureClusterID
	// waits for a commit) is alive in the first list and absent from the
	// configuration, and would be added back as a non-voter.
	servers, self = s.knownServers()
	inRaft := map[string]raft.Server{}
	for _, rs := range conf.Servers {
		inRaft[string(rs.ID)] = rs
	}
	byID := make(map[string]Server, len(servers))
	for _, sv := range servers {
		byID[sv.ID] = sv
	}
	left := false
	for _, sv := range servers {
		rs, ok := inRaft[sv.ID]
		switch {
		case sv.Left || !sv.Alive:
			left = left || (ok && sv.Left)
		case ok && rs.Suffrage == raft.Voter && sv.Recovering && sv.ID != self.ID && !s.forming(sv):
			s.demoteRecovering(sv.ID, conf, byID)
			return // one configuration change per step
		case ok && string(rs.Address) == sv.Addr:
		case !ok && s.isLeaving(sv.ID):
			// Removed on request ("pingora-node leave") and still in
			// gossip while it drains: adding it back would make a
			// departed voter of it (autopilot promotes it at once).
		case s.foreign(sv, own):
		case s.addrTaken(sv, conf, byID):
		default:
			if err := s.ap.AddServer(apServer(sv)); err != nil {
				s.log.Warn("consensus: add server", "id", sv.ID, "err", err)
			}
		}
	}
	if left {
		s.ap.RemoveDeadServers()
	}
}

// isLeaving reports whether id was removed from raft on request while
// membership showed it alive, and membership has not reported it gone
// since.
func (s *Store) isLeaving(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leaving[id]
}

// testHookStepListed, when set by a test, runs in step after it first
// lists the known servers.
var testHookStepListed func(id string)

// knownServers returns the recorded servers, sorted by ID, with this
// server added as alive if membership did not list it.
func (s *Store) knownServers() ([]Server, Server) {
	self := Server{ID: s.cfg.ID, Addr: s.Addr(), Alive: true, HasState: s.HasState(), Recovering: s.Recovering()}
	s.mu.Lock()
	out := make([]Server, 0, len(s.servers)+1)
	for _, sv := range s.servers {
		if sv.ID != self.ID {
			out = append(out, sv)
		}
	}
	s.mu.Unlock()
	out = append(out, self)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, self
}

// maybeBootstrap bootstraps the cluster when this server has no state, at
// least BootstrapExpect servers are alive, none has state, and this server
// has the lowest ID among the BootstrapExpect lowest alive IDs. It reports
// whether bootstrap is still pending (so nothing else should run).
func (s *Store) maybeBootstrap(servers []Server, self Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bootstrapped {
		return false
	}
	if s.cfg.BootstrapExpect == 0 || s.raft.LastIndex() > 0 {
		s.bootstrapped = s.raft.LastIndex() > 0
		return !s.bootstrapped
	}
	alive := chooseBootstrap(servers, s.cfg.BootstrapExpect)
	if alive == nil {
		return true
	}
	if !slices.ContainsFunc(alive, func(sv Server) bool { return sv.ID == self.ID }) {
		return true // a joiner: added once the cluster exists
	}
	s.endRecoveryForBootstrap()
	if alive[0].ID != self.ID {
		return true // another server bootstraps; we will be contacted
	}
	conf := raft.Configuration{}
	for _, sv := range alive {
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(sv.ID), Address: raft.ServerAddress(sv.Addr),
		})
	}
	if err := s.raft.BootstrapCluster(conf).Error(); err != nil {
		s.log.Error("consensus: bootstrap", "err", err)
		return true
	}
	s.log.Info("consensus: bootstrapped cluster", "voters", len(alive))
	for _, sv := range alive[1:] {
		s.formation[sv.ID] = true
	}
	s.bootstrapped = true
	s.didBootstrap.Store(true)
	return false
}

// chooseBootstrap returns the expect lowest-ID alive servers (sorted), or
// nil if fewer are alive or any known server already has raft state.
func chooseBootstrap(servers []Server, expect int) []Server {
	var alive []Server
	for _, sv := range servers {
		if sv.HasState {
			return nil
		}
		if sv.Alive && !sv.Left && sv.Addr != "" {
			alive = append(alive, sv)
		}
	}
	if len(alive) < expect {
		return nil
	}
	sort.Slice(alive, func(i, j int) bool { return alive[i].ID < alive[j].ID })
	return alive[:expect]
}

// forming reports whether sv is one of the servers this one bootstrapped
// the cluster with and has not yet reported that it stopped recovering:
// it stops when it sees the same servers this one saw, which its gossip
// tells a moment later. Such a server is not demoted: it never held
// state. A report that it stopped recovering ends this for good, so
// that it is demoted if it is ever started again without its state.
func (s *Store) forming(sv Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.formation[sv.ID]
}

// addrTaken reports whether sv's raft address belongs to another server of
// the configuration that membership shows alive. Autopilot's AddServer
// takes a new ID at a known address for a replaced host and removes the
// old server first; while that server is alive, sv is a misconfigured node
// (one advertising another host's address), and adding it removed a live
// voter, then the next step added that voter back in its place, and so on
// every step while sv ran. A server that is dead or gone from membership
// is still replaced, as before.
func (s *Store) addrTaken(sv Server, conf raft.Configuration, byID map[string]Server) bool {
	for _, rs := range conf.Servers {
		holder := string(rs.ID)
		if string(rs.Address) != sv.Addr || holder == sv.ID {
			continue
		}
		if h, ok := byID[holder]; !ok || !h.Alive || h.Left {
			return false
		}
		s.mu.Lock()
		warned := s.warnedAddr[sv.ID]
		s.warnedAddr[sv.ID] = holder
		s.mu.Unlock()
		if warned != holder {
			s.log.Warn("consensus: not adding a server that advertises the raft address of another live server: give it its own address",
				"id", sv.ID, "addr", sv.Addr, "address_of", holder)
		}
		return true
	}
	return false
}
