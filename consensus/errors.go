package consensus

import (
	"errors"
	"fmt"
)

var (
	// ErrNotLeader is returned by Put and GetConsistent on a server that is
	// not the leader while a leader is known; the error is a
	// *NotLeaderError naming it, so the caller can forward.
	ErrNotLeader = errors.New("consensus: not the leader")
	// ErrNoQuorum is returned when no leader is known or the leader cannot
	// reach a quorum within the apply bound. A Put that failed this way
	// may still commit later: its outcome is unknown.
	ErrNoQuorum = errors.New("consensus: no quorum")
	// ErrNoLeader matches (with errors.Is, alongside ErrNoQuorum) the
	// error of an operation refused because this server is not the
	// leader and knows none: nothing was proposed, so the caller may try
	// again once a leader is known. It is not ErrNotLeader (no leader to
	// forward to) and never the error of a proposal whose outcome is
	// unknown (raft's leadership lost after the proposal).
	ErrNoLeader = errors.New("no leader known")
	// ErrConflict is returned by Put when ifVersion does not match the
	// document's current version; the error is a *ConflictError.
	ErrConflict = errors.New("consensus: version conflict")
	// ErrInvalid is returned by Put when the name, the size or the
	// Validate hook refuses the document; nothing was proposed.
	ErrInvalid = errors.New("consensus: invalid document")
	// ErrLocked is returned by New when another Store holds DataDir.
	ErrLocked = errors.New("consensus: data dir in use by another process")
	// ErrClosed is returned after Shutdown or Close, or before Start.
	ErrClosed = errors.New("consensus: store not running")
)

// NotLeaderError is returned when this server is not the leader; it names
// the leader known to this server.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("consensus: not the leader (leader is %s at %s)", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// ConflictError is returned when a compare-and-set write finds another
// version.
type ConflictError struct {
	Name    string
	Want    int64
	Current int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("consensus: version conflict on %q: want %d, current %d", e.Name, e.Want, e.Current)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
