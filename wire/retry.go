package wire

import (
	"context"
	"errors"
	"os"
)

// A connection kept for later calls (the unary connection, or an idle
// stream connection) can die unseen: a peer that restarted, or a network
// blip that lost its FIN, leaves it looking alive until the next call is
// written and the peer's kernel answers with a reset. Without a retry the
// first call on each such connection fails, and its caller treats the
// peer as down (sharedcache: suspect for SuspectFor; ratelimit: a round
// in fallback). So a call retries once, on a connection dialled after the
// failure, when it failed because a reused connection was dead, as
// net/http's Transport retries on a dead keep-alive connection:
//
//   - staleUnsent: the connection was already dead, or its write failed
//     (not timed out), so the request never reached the peer whole. A
//     partial frame is never run, so the retry cannot run the call twice:
//     every call may be retried.
//   - staleUnanswered: the request was written whole and the connection
//     died (EOF, reset) before a single byte came back on it. Most likely
//     the peer never read it (a restarted peer's kernel resets the
//     connection), but the peer may have run it and died before answering:
//     only a call whose context says it may run twice (WithIdempotent) is
//     retried.
//
// A connection is reused when it delivered an answer before; a call on a
// connection dialled for it (or with it) that fails is never retried: the
// peer is down or refusing, and one more dial would not say otherwise.
// Neither is a call that failed any other way: a timeout, a remote error,
// a connection that died after bytes of an answer (to any call on it)
// came back.
//
// No liveness check runs before a connection is reused: each connection
// has a reader goroutine always reading, which fails it (and the next call
// dials) the moment its FIN or reset arrives. What it cannot see, the
// connection whose peer vanished without a word, no check short of a round
// trip can see either.
type stale uint8

const (
	notStale        stale = iota // answered, or failed in a way never retried
	staleUnsent                  // a reused connection dead before the request was written whole
	staleUnanswered              // a reused connection that died after the request, before any byte came back
)

// idempotentKey is the context key of WithIdempotent.
type idempotentKey struct{}

// WithIdempotent returns a context whose calls may run twice at the peer:
// a call written whole on a reused connection that dies before anything
// comes back is sent once more on a fresh connection, though the peer may
// have run it before dying. Without it, such a call fails with
// ErrPeerGone; a call that never reached the peer is retried either way.
// Mark lookups, and writes whose repetition the caller can afford.
func WithIdempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

// idempotent reports whether ctx came from WithIdempotent.
func idempotent(ctx context.Context) bool {
	v, _ := ctx.Value(idempotentKey{}).(bool)
	return v
}

// retryable reports whether a call that failed as k may be sent once more
// on a fresh connection.
func retryable(ctx context.Context, k stale) bool {
	if ctx.Err() != nil {
		return false
	}
	switch k {
	case staleUnsent:
		return true
	case staleUnanswered:
		return idempotent(ctx)
	}
	return false
}

// sendFailure is how a failed write on a connection that was reused
// counts: a write that timed out says the peer is slow (or the caller's
// deadline passed), not that the connection was dead.
func sendFailure(reused bool, err error) stale {
	if !reused || errors.Is(err, os.ErrDeadlineExceeded) {
		return notStale
	}
	return staleUnsent
}
