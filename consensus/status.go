package consensus

import (
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// Status is a JSON-friendly picture of this server's raft state, for the
// admin API's /status.
type Status struct {
	ID          string `json:"id"`
	ClusterID   string `json:"cluster_id"` // "" until the leader wrote one (see Store.ClusterID)
	State       string `json:"state"`      // Leader, Follower, Candidate, Shutdown, or "stopped"
	LeaderID    string `json:"leader_id"`
	LeaderAddr  string `json:"leader_addr"`
	Term        uint64 `json:"term"`
	LastIndex   uint64 `json:"last_index"`
	CommitIndex uint64 `json:"commit_index"`
	// AppliedIndex is the last log entry applied here: documents, and raft's
	// own entries (configuration changes, a new leader's no-op), so that a
	// node that has caught up shows its commit index. Stopped, it is the
	// last document applied (Store.AppliedIndex).
	AppliedIndex uint64 `json:"applied_index"`
	// Recovering is true while this server, started without raft state,
	// has not caught up with a leader: it does not vote (see
	// Store.Recovering).
	Recovering bool `json:"recovering,omitempty"`
	// CatchUp is present while this server, since it started or
	// re-joined, has not caught up with the leader's commit index (see
	// Store.CatchUp), or gave up waiting.
	CatchUp *CatchUp `json:"catch_up,omitempty"`
	// Healthy and FailureTolerance come from autopilot, on the leader only.
	Healthy          *bool  `json:"healthy,omitempty"`
	FailureTolerance *int   `json:"failure_tolerance,omitempty"`
	Voters           []Peer `json:"voters"`
	NonVoters        []Peer `json:"nonvoters"`
}

// Peer is one server of the raft configuration.
type Peer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// Health is "healthy", "unhealthy" (from autopilot, leader only) or
	// "unknown".
	Health      string    `json:"health"`
	StableSince time.Time `json:"stable_since,omitzero"`
	LastContact string    `json:"last_contact,omitempty"`
	// RemoveAt, on the leader, is when a server that membership sees
	// down (dead, or stopped and left) is due to be taken out of raft,
	// DeadServerGrace after it was first seen down, unless it comes back;
	// autopilot may wait longer to keep a majority of voters.
	RemoveAt time.Time `json:"remove_at,omitzero"`
}

// Status returns the current Status. It never blocks on the network.
func (s *Store) Status() Status {
	st := Status{ID: s.cfg.ID, ClusterID: s.ClusterID(), State: "stopped", AppliedIndex: s.AppliedIndex(),
		Recovering: s.Recovering(), Voters: []Peer{}, NonVoters: []Peer{}}
	if !s.running() {
		return st
	}
	st.State = s.raft.State().String()
	st.LeaderID, st.LeaderAddr = s.Leader()
	st.Term = s.raft.CurrentTerm()
	st.LastIndex = s.raft.LastIndex()
	st.CommitIndex, _ = strconv.ParseUint(s.raft.Stats()["commit_index"], 10, 64)
	// raft's starts at its last snapshot's after a restart, and stays
	// there until a leader's commit index arrives; the documents restored
	// and served are applied through the store's (status showed "applied
	// 0" on a restarted node serving config version 1194).
	st.AppliedIndex = max(s.raft.AppliedIndex(), s.AppliedIndex())
	if cu := s.CatchUp(); !cu.Done() {
		st.CatchUp = &cu
	}
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return st
	}
	ap := settled(s.apState.Load(), raft.ServerID(s.cfg.ID))
	if ap != nil && st.State == raft.Leader.String() {
		h, ft := ap.Healthy, ap.FailureTolerance
		st.Healthy, st.FailureTolerance = &h, &ft
	}
	for _, rs := range f.Configuration().Servers {
		p := Peer{ID: string(rs.ID), Addr: string(rs.Address), Health: "unknown"}
		if ap != nil {
			if ss, ok := ap.Servers[rs.ID]; ok {
				p.Health = map[bool]string{true: "healthy", false: "unhealthy"}[ss.Health.Healthy]
				p.StableSince = ss.Health.StableSince
				p.LastContact = ss.Stats.LastContact.Round(time.Millisecond).String()
			}
		}
		if st.State == raft.Leader.String() && p.ID != s.cfg.ID {
			s.mu.Lock()
			if since, ok := s.downSince[p.ID]; ok {
				p.RemoveAt = since.Add(s.cfg.Timing.DeadServerGrace).UTC()
			}
			s.mu.Unlock()
		}
		if rs.Suffrage == raft.Voter {
			st.Voters = append(st.Voters, p)
		} else {
			st.NonVoters = append(st.NonVoters, p)
		}
	}
	sort.Slice(st.Voters, func(i, j int) bool { return st.Voters[i].ID < st.Voters[j].ID })
	sort.Slice(st.NonVoters, func(i, j int) bool { return st.NonVoters[i].ID < st.NonVoters[j].ID })
	return st
}

// settled returns ap, or nil while it is autopilot's first state of a new
// leadership, computed before the leader knew its servers: it rates every
// server unhealthy, the leader itself included (status said "UNHEALTHY:
// failure tolerance 0; unhealthy: voter n1 (last contact 0s), voter n2
// ..., voter n4" for a second after the leader's kill -9). Status uses
// the state only on the leader, which is healthy in any state computed
// from what it knows.
func settled(ap *autopilot.State, self raft.ServerID) *autopilot.State {
	if ap == nil {
		return nil
	}
	if me, ok := ap.Servers[self]; ok && !me.Health.Healthy {
		return nil
	}
	return ap
}
