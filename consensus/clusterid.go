package consensus

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/pingora-go/pingora-go/internal/msgpackx"
)

// The cluster ID is a cluster's identity: a random ID that the first
// leader of a cluster writes into the log (the first entry after the
// bootstrap configuration), so that every server applies it, keeps it in
// its data dir (applied.msgpack and snapshots) and gossips it; a server
// with state from another cluster is told apart by it (issue 12). A
// cluster made before cluster IDs gets one from its next leader. The
// first ID committed wins: later proposals (a new leader that has not
// applied the first one yet) change nothing.

// cmdClusterID is the type byte of a command that sets the cluster ID.
const cmdClusterID byte = 2

type clusterIDCmd struct {
	ID string `msgpack:"id"`
}

// ClusterIDLen is the length of a cluster ID: 128 random bits in hex.
const ClusterIDLen = 2 * 16

// newClusterID returns 128 random bits in hex.
func newClusterID() (string, error) {
	var b [ClusterIDLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("consensus: cluster ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// setClusterID is the FSM step of a cluster ID command: the first ID
// applied is kept. It reports whether the state changed.
func (s *docState) setClusterID(data []byte) (applyResult, bool) {
	var c clusterIDCmd
	if err := msgpackx.Unmarshal(data[1:], &c); err != nil || c.ID == "" {
		return applyResult{Err: fmt.Errorf("consensus: bad cluster ID command: %v", err)}, false
	}
	if s.ClusterID != "" {
		return applyResult{ClusterID: s.ClusterID}, false
	}
	s.ClusterID = c.ID
	return applyResult{ClusterID: c.ID}, true
}

// ClusterID returns the ID of the cluster whose state this server holds,
// or "" when it has none yet (a new server, or a cluster made before
// cluster IDs whose leader has not written one yet).
func (s *Store) ClusterID() string {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	return s.fsm.st.ClusterID
}

// ensureClusterID writes a cluster ID when this leader's cluster has none.
// The barrier makes sure the entries of earlier leaders are applied first,
// so that an existing ID is seen.
func (s *Store) ensureClusterID() {
	if s.ClusterID() != "" {
		return
	}
	if err := s.raft.Barrier(s.cfg.Timing.ApplyTimeout).Error(); err != nil || s.ClusterID() != "" {
		return
	}
	id, err := newClusterID()
	if err != nil {
		s.log.Error("consensus: cluster ID", "err", err)
		return
	}
	data, err := msgpack.Marshal(clusterIDCmd{ID: id})
	if err != nil {
		s.log.Error("consensus: cluster ID", "err", err)
		return
	}
	f := s.raft.Apply(append([]byte{cmdClusterID}, data...), s.cfg.Timing.ApplyTimeout)
	if err := f.Error(); err != nil {
		s.log.Warn("consensus: writing the cluster ID", "err", s.mapErr(err))
		return
	}
	if res, ok := f.Response().(applyResult); ok && res.ClusterID == id {
		s.log.Info("consensus: cluster ID written", "cluster_id", id)
	}
}

// foreign reports whether sv must not be added because it may hold
// another cluster's state, logging it once per server and ID: it reports
// another cluster's ID, or it has raft state but no ID (another cluster's
// in its first second, before its ID was gossiped, or from before cluster
// IDs). A server without state is new and joins. While this server has no
// ID yet, a server with one waits.
func (s *Store) foreign(sv Server, own string) bool {
	switch {
	case sv.ClusterID == own || (sv.ClusterID == "" && !sv.HasState):
		return false
	case own == "":
		return true
	}
	s.mu.Lock()
	warned, seen := s.warnedForeign[sv.ID]
	s.warnedForeign[sv.ID] = sv.ClusterID
	s.mu.Unlock()
	if !seen || warned != sv.ClusterID {
		s.log.Warn("consensus: not adding a server that may hold another cluster's state (start it with an empty data dir to add it)",
			"id", sv.ID, "its_cluster_id", sv.ClusterID, "has_state", sv.HasState, "cluster_id", own)
	}
	return true
}
