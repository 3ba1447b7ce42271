package consensus

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// maxNameLen caps document names.
const maxNameLen = 256

// Put writes a new version of the named document through the leader and
// returns it once committed and applied on the leader. ifVersion -1 writes
// unconditionally; otherwise the write commits only if the current version
// equals ifVersion (0: the document must not exist), else *ConflictError.
// The check runs inside the FSM, so it is decided in log order.
//
// Errors: ErrInvalid (nothing proposed), *NotLeaderError (forward to the
// named leader), ErrConflict, ErrNoQuorum (within ctx's deadline or
// Timing.ApplyTimeout; the outcome may be unknown), ErrClosed.
func (s *Store) Put(ctx context.Context, name string, content []byte, ifVersion int64) (Doc, error) {
	if err := s.awaitRunning(ctx); err != nil {
		return Doc{}, err
	}
	if err := s.validate(name, content); err != nil {
		return Doc{}, err
	}
	if err := s.leading(ctx); err != nil {
		return Doc{}, err
	}
	data, err := encodeCmd(putCmd{
		Name: name, Content: append([]byte(nil), content...), IfVersion: ifVersion,
		Time: s.cfg.Clock.Now().UTC(), Node: s.cfg.ID,
	})
	if err != nil {
		return Doc{}, fmt.Errorf("consensus: encode: %w", err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	f := s.raft.Apply(data, s.cfg.Timing.ApplyTimeout)
	if err := waitFuture(ctx, f); err != nil {
		return Doc{}, s.mapErr(err)
	}
	res, ok := f.Response().(applyResult)
	if !ok {
		return Doc{}, fmt.Errorf("consensus: unexpected apply response %T", f.Response())
	}
	return res.Doc, res.Err
}

func (s *Store) validate(name string, content []byte) error {
	switch {
	case name == "" || len(name) > maxNameLen:
		return fmt.Errorf("%w: name must be 1 to %d bytes", ErrInvalid, maxNameLen)
	case len(content) > s.cfg.MaxDocSize:
		return fmt.Errorf("%w %q: %d bytes exceed MaxDocSize %d", ErrInvalid, name, len(content), s.cfg.MaxDocSize)
	}
	if s.cfg.ValidateDoc != nil {
		if err := s.cfg.ValidateDoc(name, content); err != nil {
			return fmt.Errorf("%w %q: %w", ErrInvalid, name, err)
		}
	}
	return nil
}

// leading returns nil when this server leads, else the error to answer:
// *NotLeaderError naming the leader, or ErrNoQuorum. While no leader is
// known (an election is under way) it first waits up to
// Timing.LeaderHold, bounded by ctx, as Consul holds a server RPC for
// rpc_hold_timeout: a client sees a short delay across a leader change
// instead of a 503.
func (s *Store) leading(ctx context.Context) error {
	if s.raft.State() == raft.Leader {
		return nil
	}
	if id, _ := s.Leader(); id == "" && s.cfg.Timing.LeaderHold > 0 {
		hctx, cancel := context.WithTimeout(ctx, s.cfg.Timing.LeaderHold)
		_, _ = s.WaitForLeader(hctx)
		cancel()
		if s.raft.State() == raft.Leader {
			return nil
		}
	}
	return s.mapErr(raft.ErrNotLeader)
}

// bound gives ctx the apply timeout when it has no deadline.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.Timing.ApplyTimeout)
}

// waitFuture waits for f or ctx. The goroutine ends when raft resolves the
// future, which it always does, at the latest on shutdown.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1) // cap 1: the waiter may have gone
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get returns the latest applied version of the document on this server:
// a local, possibly stale read that works without a leader.
func (s *Store) Get(name string) (Doc, bool) { return s.fsm.get(name) }

// GetConsistent returns the latest committed version of the document,
// linearizably: on the leader it commits a barrier through a quorum and
// then reads. Followers return *NotLeaderError.
func (s *Store) GetConsistent(ctx context.Context, name string) (Doc, bool, error) {
	if err := s.awaitRunning(ctx); err != nil {
		return Doc{}, false, err
	}
	if err := s.leading(ctx); err != nil {
		return Doc{}, false, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := waitFuture(ctx, s.raft.Barrier(s.cfg.Timing.ApplyTimeout)); err != nil {
		return Doc{}, false, s.mapErr(err)
	}
	d, ok := s.fsm.get(name)
	return d, ok, nil
}

// GetCurrent returns the latest committed version of the document, like
// GetConsistent, but appends nothing to the raft log (a barrier is a log
// entry): the leader confirms with a quorum that it still leads, then
// waits until it has applied every entry of its log, which holds every
// committed one. A caller that must not move the raft index for a read,
// such as a write skipped because nothing changed, uses it. Followers
// return *NotLeaderError.
func (s *Store) GetCurrent(ctx context.Context, name string) (Doc, bool, error) {
	if err := s.awaitRunning(ctx); err != nil {
		return Doc{}, false, err
	}
	if err := s.leading(ctx); err != nil {
		return Doc{}, false, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	last := s.raft.LastIndex()
	if err := waitFuture(ctx, s.raft.VerifyLeader()); err != nil {
		return Doc{}, false, s.mapErr(err)
	}
	t := s.cfg.Clock.NewTicker(time.Millisecond)
	defer t.Stop()
	for s.raft.AppliedIndex() < last {
		select {
		case <-ctx.Done():
			return Doc{}, false, s.mapErr(ctx.Err())
		case <-t.C():
		}
	}
	// raft counts an entry applied once it has handed it to the FSM,
	// which applies it in a goroutine of its own, later: a leader just
	// elected may not have applied a write the old leader acknowledged.
	// Wait for the FSM itself to hold the last command up to last.
	if need := s.lastCommand(last); need > 0 {
		for s.AppliedIndex() < need {
			select {
			case <-ctx.Done():
				return Doc{}, false, s.mapErr(ctx.Err())
			case <-t.C():
			}
		}
	}
	d, ok := s.fsm.get(name)
	return d, ok, nil
}

// lastCommand returns the index of the last command entry at or below
// index that the FSM has not applied yet, or 0 if it has applied them all.
// Other entries (a new term's no-op, configuration changes, barriers)
// never reach the FSM; entries compacted into a snapshot are in the FSM.
func (s *Store) lastCommand(index uint64) uint64 {
	for i := index; i > s.AppliedIndex(); i-- {
		var l raft.Log
		if err := s.bolt.GetLog(i, &l); err != nil {
			return 0
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return 0
}

// History returns the kept versions of the document, oldest first (at most
// MaxHistory), from this server's applied state.
func (s *Store) History(name string) []Doc { return s.fsm.history(name) }

// Names returns the names of all documents, sorted.
func (s *Store) Names() []string { return s.fsm.names() }

// AppliedIndex returns the raft index of the last command applied here.
func (s *Store) AppliedIndex() uint64 {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	return s.fsm.st.Index
}

// WaitForLeader blocks until this server knows a leader, and returns its
// ID, or ctx's error. Useful for readiness and for tests.
func (s *Store) WaitForLeader(ctx context.Context) (string, error) {
	t := s.cfg.Clock.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if id, _ := s.Leader(); id != "" {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C():
		}
	}
}

// RemoveServer removes the server id from the raft configuration, on the
// leader (followers return *NotLeaderError), and reports whether it was
// there. It is the operator's tool for a server that will not come back
// (node's force-leave) and for a server leaving for good; autopilot does
// the same for a dead server after Timing.DeadServerGrace. The caller
// checks that id is really gone or leaving. A server membership shows
// alive (one leaving: it drains and leaves gossip after this returns) is
// not added back by the reconcile steps until membership reports it gone.
func (s *Store) RemoveServer(ctx context.Context, id string) (bool, error) {
	if err := s.awaitRunning(ctx); err != nil {
		return false, err
	}
	if err := s.leading(ctx); err != nil {
		return false, err
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, s.mapErr(err)
	}
	found := false
	for _, sv := range f.Configuration().Servers {
		found = found || string(sv.ID) == id
	}
	if !found {
		return false, nil
	}
	// Marked before the removal: a step running once it is done must
	// already see the mark.
	s.mu.Lock()
	sv, known := s.servers[id]
	mark := known && sv.Alive && !sv.Left && !s.leaving[id]
	if mark {
		s.leaving[id] = true
	}
	s.mu.Unlock()
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := waitFuture(ctx, s.raft.RemoveServer(raft.ServerID(id), 0, s.cfg.Timing.ApplyTimeout)); err != nil {
		if mark {
			s.mu.Lock()
			delete(s.leaving, id)
			s.mu.Unlock()
		}
		return false, fmt.Errorf("consensus: remove server %s: %w", id, s.mapErr(err))
	}
	s.log.Info("consensus: removed server on request", "id", id)
	return true, nil
}
