package consensus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// A server that starts without raft state may be new, or may be a voter
// that lost its data dir and restarts under the same ID: raft still counts
// it as a voter, but it has lost its log and its vote record (term and
// votedFor). Voting on, it could vote twice in one term, or, with an empty
// log, help elect a leader that misses entries it had helped commit: a
// committed config version would be lost (the "amnesiac voter"; Consul
// and etcd make an operator remove and re-add such a member).
//
// So a server without state at New is recovering (and stays so across
// restarts until it is done: recoveringFile). While it is, it neither
// grants a vote nor asks for one (voteGuard, a filter around the raft
// transport): it still takes the leader's log as any follower does. It
// gossips that it is recovering (Server.Recovering); the leader demotes a
// recovering voter to a non-voter (demoteRecovering) when the other voters
// keep a quorum without it, and counts a recovering server as unhealthy.
// The server stops recovering once it has caught up and is not a voter in
// its configuration (caughtUp), or when it is one of the servers that form
// a new cluster together (maybeBootstrap: nothing was ever committed).
// autopilot then promotes it once it has stayed healthy for
// ServerStabilizationTime. A new server joins the same way: as a
// non-voter, promoted once caught up.

// recoveringFile marks a data dir whose server has not finished
// recovering. A crash while it catches up leaves part of the log on disk,
// which would make it look like a server with state when it starts again:
// the marker keeps it recovering.
const recoveringFile = "RECOVERING"

// openRecovery sets recovering at New: without raft state, writing the
// marker before raft writes anything, or with the marker of a recovery
// cut short.
func (s *Store) openRecovery() error {
	path := filepath.Join(s.cfg.DataDir, recoveringFile)
	_, err := os.Stat(path)
	marked := err == nil
	if !s.hasState && !marked {
		if err := writeSynced(path); err != nil {
			return fmt.Errorf("consensus: mark the data dir recovering: %w", err)
		}
		marked = true
	}
	s.recovering.Store(marked)
	if marked && s.hasState {
		s.log.Warn("consensus: this server stopped before it had caught up after starting without raft state; it does not vote until it has",
			"id", s.cfg.ID)
	}
	return nil
}

// writeSynced creates an empty file at path and syncs it and its directory.
func writeSynced(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// endRecovery ends recovery once, removing the marker, and logs why.
func (s *Store) endRecovery(msg string, args ...any) {
	if !s.recovering.CompareAndSwap(true, false) {
		return
	}
	if err := os.Remove(filepath.Join(s.cfg.DataDir, recoveringFile)); err != nil && !os.IsNotExist(err) {
		s.log.Warn("consensus: remove the recovering mark (the server recovers again if it restarts)", "err", err)
	}
	s.log.Info(msg, args...)
}

// errRecovering answers a leadership transfer to a recovering server.
var errRecovering = errors.New("consensus: this server lost its raft state and has not caught up; it does not vote")

// Recovering reports whether this server started without raft state and
// has not caught up with a leader yet: it then neither votes nor asks for
// votes. node gossips it so that the leader demotes it to a non-voter
// until it has caught up.
func (s *Store) Recovering() bool { return s.recovering.Load() }

// caughtUp ends recovery once this server holds every entry committed
// before it started, and is not a voter in the configuration it holds (the
// leader demoted it, or it is new and was added as a non-voter): the last
// AppendEntries of the current leader (term T) said the leader had
// committed up to index C, C is an entry of term T, and raft counts C
// applied here, which it does only once C is committed in this server's
// log (stored before the commit index moves). The FSM may still lag
// behind C: voting depends on the log alone, and reads that need the FSM
// wait for its own index (GetCurrent, GetConsistent). Every entry committed before it started is at or below C: one
// of an earlier term is in the leader's log before the leader's first
// entry of term T (leader completeness), and one of term T the leader
// committed before it sent C. Log matching makes this server's entries up
// to C the leader's. Waiting for the demotion makes the way back the same
// every time, non-voter then voter, and the configuration never counts
// its vote before autopilot has seen it caught up and stable.
func (s *Store) caughtUp() {
	if !s.recovering.Load() {
		return
	}
	term, commit := s.guard.leaderCommit()
	if commit == 0 || term != s.raft.CurrentTerm() || s.raft.AppliedIndex() < commit {
		return
	}
	if t, ok := s.termAt(commit); !ok || t != term {
		return // the leader has not committed an entry of its own term yet
	}
	if s.isVoter() {
		return // the leader has not demoted this server yet (demoteRecovering)
	}
	s.endRecovery("consensus: caught up with the leader; voting again", "term", term, "index", commit)
}

// isVoter reports whether this server is a voter in the latest
// configuration it holds.
func (s *Store) isVoter() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return true
	}
	for _, sv := range f.Configuration().Servers {
		if string(sv.ID) == s.cfg.ID {
			return sv.Suffrage == raft.Voter
		}
	}
	return false
}

// termAt returns the term of the entry at index, from the log or from the
// latest snapshot when that ends at index.
func (s *Store) termAt(index uint64) (uint64, bool) {
	var l raft.Log
	if err := s.bolt.GetLog(index, &l); err == nil {
		return l.Term, true
	}
	metas, err := s.snaps.List()
	if err == nil && len(metas) > 0 && metas[0].Index == index {
		return metas[0].Term, true
	}
	return 0, false
}

// endRecoveryForBootstrap ends recovery for a server that forms a new
// cluster with the others: none of them has state, so nothing was ever
// committed that it could have lost.
func (s *Store) endRecoveryForBootstrap() {
	s.endRecovery("consensus: forming a new cluster; voting")
}

// demoteRecovering demotes the voter id, which reports that it lost its
// raft state, to a non-voter, when the other voters that are alive and
// not recovering still make a quorum of the voters left. Otherwise it
// stays a voter that does not vote (but takes the log, so the cluster can
// still commit) until they do: taking it out would stop the cluster from
// committing anything at all.
func (s *Store) demoteRecovering(id string, conf raft.Configuration, byID map[string]Server) {
	voters, live := 0, 0
	for _, rs := range conf.Servers {
		if rs.Suffrage != raft.Voter || string(rs.ID) == id {
			continue
		}
		voters++
		sv, ok := byID[string(rs.ID)]
		if ok && sv.Alive && !sv.Left && !sv.Recovering {
			live++
		}
	}
	if voters == 0 || live < voters/2+1 {
		s.log.Warn("consensus: a voter lost its raft state, and the others lack a quorum without it: it stays a voter that does not vote until they have one",
			"id", id, "voters_left", voters, "alive", live)
		return
	}
	if err := s.raft.DemoteVoter(raft.ServerID(id), 0, s.cfg.Timing.ApplyTimeout).Error(); err != nil {
		s.log.Warn("consensus: demote a voter that lost its raft state", "id", id, "err", s.mapErr(err))
		return
	}
	s.log.Warn("consensus: a voter lost its raft state (restarted with an empty data dir); demoted to non-voter until it has caught up",
		"id", id)
}

// voteGuard wraps the raft transport. While its store is recovering it
// answers vote and pre-vote requests with a refusal, refuses a leadership
// transfer, and refuses this server's own vote requests before they are
// sent. It notes the leader's term and commit index from every
// AppendEntries for caughtUp.
type voteGuard struct {
	raft.Transport
	s   *Store
	out chan raft.RPC // raft's Consumer; unbuffered like raft's own

	mu     sync.Mutex
	term   uint64 // the newest AppendEntries term seen
	commit uint64 // its leader's commit index

	refused atomic.Uint64 // votes and pre-votes refused, both ways
	warned  atomic.Bool

	// The transport hands heartbeats to raft directly, on its own
	// goroutines, which raft.Shutdown does not wait for: one that passed
	// raft's shutdown check could save a new term to the log store after
	// Close closed it (raft panics on that). stopHeartbeats refuses new
	// ones and waits for those running; hbMu is read-held by each.
	hbMu     sync.RWMutex
	hbClosed bool
}

var _ raft.Transport = (*voteGuard)(nil)

// preVoteGuard is a voteGuard around a transport with pre-vote: raft
// turns pre-vote on only when its transport has it.
type preVoteGuard struct{ *voteGuard }

var _ raft.WithPreVote = preVoteGuard{}

func newVoteGuard(s *Store, t raft.Transport) *voteGuard {
	return &voteGuard{Transport: t, s: s, out: make(chan raft.RPC)}
}

// transport returns what raft is given: g, with pre-vote when the wrapped
// transport has it.
func (g *voteGuard) transport() raft.Transport {
	if _, ok := g.Transport.(raft.WithPreVote); ok {
		return preVoteGuard{g}
	}
	return g
}

func (g *voteGuard) Consumer() <-chan raft.RPC { return g.out }

// Close closes the wrapped transport when it can be closed.
func (g *voteGuard) Close() error {
	if c, ok := g.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// SetHeartbeatHandler notes the heartbeats the transport hands to raft
// directly.
func (g *voteGuard) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		g.Transport.SetHeartbeatHandler(nil)
		return
	}
	g.Transport.SetHeartbeatHandler(func(rpc raft.RPC) {
		g.hbMu.RLock()
		defer g.hbMu.RUnlock()
		if g.hbClosed {
			rpc.Respond(nil, raft.ErrRaftShutdown)
			return
		}
		g.filter(rpc)
		cb(rpc)
	})
}

// stopHeartbeats refuses the heartbeats that arrive from now on and waits
// for those being handled; after it, none reaches raft.
func (g *voteGuard) stopHeartbeats() {
	g.hbMu.Lock()
	g.hbClosed = true
	g.hbMu.Unlock()
}

// AppendEntries notes each server that answers one (Store.noteAnswered):
// raft calls it for every heartbeat, so a server that works is noted at
// least every HeartbeatTimeout/10 while this server leads.
func (g *voteGuard) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := g.Transport.AppendEntries(id, target, args, resp)
	if err == nil {
		g.s.noteAnswered(string(id))
	}
	return err
}

func (g *voteGuard) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if g.s.Recovering() {
		g.refuse("not asking for votes")
		*resp = raft.RequestVoteResponse{Term: args.Term}
		return nil
	}
	return g.Transport.RequestVote(id, target, args, resp)
}

func (g preVoteGuard) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if g.s.Recovering() {
		g.refuse("not asking for votes")
		*resp = raft.RequestPreVoteResponse{Term: args.Term}
		return nil
	}
	return g.Transport.(raft.WithPreVote).RequestPreVote(id, target, args, resp)
}

// relay hands the wrapped transport's RPCs to raft until ctx ends, but
// answers those a recovering server must refuse itself.
func (g *voteGuard) relay(ctx context.Context) {
	in := g.Transport.Consumer()
	for {
		select {
		case <-ctx.Done():
			return
		case rpc := <-in:
			if g.filter(rpc) {
				continue
			}
			select {
			case g.out <- rpc:
			case <-ctx.Done():
				return
			}
		}
	}
}

// filter notes an AppendEntries and answers, while recovering, a vote,
// a pre-vote or a leadership transfer; it reports whether it answered.
func (g *voteGuard) filter(rpc raft.RPC) bool {
	switch req := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		if g.s.running() {
			id, _ := g.s.Leader()
			g.s.noteCommit(req.LeaderCommitIndex, id == "")
		}
		g.noteLeader(req.Term, req.LeaderCommitIndex)
		return false
	case *raft.RequestVoteRequest, *raft.RequestPreVoteRequest, *raft.TimeoutNowRequest:
		if !g.s.Recovering() {
			return false
		}
	default:
		return false
	}
	g.refuse("refusing to vote")
	term := g.s.raft.CurrentTerm()
	switch rpc.Command.(type) {
	case *raft.RequestVoteRequest:
		rpc.Respond(&raft.RequestVoteResponse{RPCHeader: g.header(), Term: term}, nil)
	case *raft.RequestPreVoteRequest:
		rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: g.header(), Term: term}, nil)
	default:
		rpc.Respond(nil, errRecovering)
	}
	return true
}

func (g *voteGuard) header() raft.RPCHeader {
	id := raft.ServerID(g.s.cfg.ID)
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: g.EncodePeer(id, g.LocalAddr())}
}

// noteLeader records the commit index of the newest term's leader and,
// while recovering, asks for a check whether this server has caught up.
func (g *voteGuard) noteLeader(term, commit uint64) {
	g.mu.Lock()
	switch {
	case term > g.term:
		g.term, g.commit = term, commit
	case term == g.term && commit > g.commit:
		g.commit = commit
	}
	g.mu.Unlock()
	if g.s.Recovering() {
		g.s.Kick()
	}
}

func (g *voteGuard) leaderCommit() (term, commit uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.term, g.commit
}

// refuse counts a refusal and logs the first one.
func (g *voteGuard) refuse(what string) {
	g.refused.Add(1)
	if g.warned.CompareAndSwap(false, true) {
		g.s.log.Warn("consensus: this server started without raft state and has not caught up with a leader: "+what+" until it has",
			"id", g.s.cfg.ID)
	}
}
