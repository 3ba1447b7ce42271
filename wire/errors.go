package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrPeerGone is returned (wrapped, with the cause) when the peer cannot be
// dialled or the connection dies while a call is pending. Pending calls fail
// as soon as the connection is seen to be dead, not at their deadline. A
// stream whose connection dies before its end frame fails with it too.
var ErrPeerGone = errors.New("wire: peer gone")

// ErrNotSent matches (with errors.Is) the failure of a call whose request
// never left this client: its connection could not be dialled, or was
// found dead before anything was written. The peer cannot have run it,
// so the caller may send it again, to the same peer or another, whatever
// it does. Any other failure after the call was sent (ErrPeerGone with no
// ErrNotSent, a deadline) leaves it unknown whether the peer ran it.
var ErrNotSent = errors.New("wire: not sent")

// notSent marks err as ErrNotSent, keeping its text.
type notSent struct{ err error }

func (e notSent) Error() string        { return e.err.Error() }
func (e notSent) Unwrap() error        { return e.err }
func (e notSent) Is(target error) bool { return target == ErrNotSent }

// ErrClosed is returned by calls on a closed Client and by Serve after Close.
var ErrClosed = errors.New("wire: closed")

// ErrUnknownMethod matches (with errors.Is) a RemoteError for a method the
// peer has no handler for (or none of the kind asked: unary or stream).
var ErrUnknownMethod = errors.New("wire: unknown method")

// ErrNotOwner matches a RemoteError returned when the peer does not own the
// key asked about; the error carries both ring versions. Handlers return
// NotOwner(version) to answer with it.
var ErrNotOwner = errors.New("wire: not the owner")

// ErrOverloaded matches a RemoteError returned when the peer refused the call
// without running it (too many calls in flight on the connection). Handlers
// may return it (wrapped) to shed load too.
var ErrOverloaded = errors.New("wire: overloaded")

// Code says why a call failed at the peer. It travels in the first byte of
// an error frame's payload.
type Code uint8

// Error codes. A code this version does not know reads as CodeHandler-like
// with its number kept in RemoteError.Code.
const (
	// CodeHandler: the handler returned an error (or panicked).
	CodeHandler Code = 0
	// CodeUnknownMethod: no handler for the method (of the kind asked).
	CodeUnknownMethod Code = 1
	// CodeNotOwner: the handler does not own the key; the frame carries
	// the caller's and the server's ring versions.
	CodeNotOwner Code = 2
	// CodeOverloaded: refused without running.
	CodeOverloaded Code = 3
	// CodeDeadline: the caller's deadline passed before the handler
	// started, or the handler gave up on it.
	CodeDeadline Code = 4

	numCodes = 5
)

var codeNames = [numCodes]string{"handler", "unknown_method", "not_owner", "overloaded", "deadline"}

// String returns the code's metric label, as "not_owner".
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code_%d", uint8(c))
}

// RemoteError is an error reported by the peer. Message is the handler
// error's text; the error value itself does not cross the wire. It matches
// ErrUnknownMethod, ErrNotOwner, ErrOverloaded and, for CodeDeadline,
// context.DeadlineExceeded with errors.Is.
type RemoteError struct {
	Addr    string
	Method  string
	Code    Code
	Message string
	// CallerRing and ServerRing are set for CodeNotOwner: the ring version
	// the call was sent with (WithRingVersion) and the one the peer holds.
	CallerRing, ServerRing uint64
}

func (e *RemoteError) Error() string {
	if e.Code == CodeNotOwner {
		return fmt.Sprintf("wire: %s %s: %s (caller ring %d, server ring %d): %s", e.Addr, e.Method, e.Code, e.CallerRing, e.ServerRing, e.Message)
	}
	return fmt.Sprintf("wire: %s %s: remote %s: %s", e.Addr, e.Method, e.Code, e.Message)
}

// Is matches the sentinel for e's code.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case ErrUnknownMethod:
		return e.Code == CodeUnknownMethod
	case ErrNotOwner:
		return e.Code == CodeNotOwner
	case ErrOverloaded:
		return e.Code == CodeOverloaded
	case context.DeadlineExceeded:
		return e.Code == CodeDeadline
	}
	return false
}

// notOwnerError is what NotOwner returns; the server adds the caller's ring.
type notOwnerError struct{ server uint64 }

func (e *notOwnerError) Error() string {
	return fmt.Sprintf("wire: not the owner (server ring %d)", e.server)
}

func (e *notOwnerError) Is(target error) bool { return target == ErrNotOwner }

// NotOwner is returned by a handler asked about a key it does not own under
// its ring version serverRing. The caller gets a RemoteError with
// CodeNotOwner and both versions, so it can tell who is behind.
func NotOwner(serverRing uint64) error { return &notOwnerError{server: serverRing} }

// remoteFailure is an error frame's content before it is encoded.
type remoteFailure struct {
	code                   Code
	msg                    string
	callerRing, serverRing uint64
}

// failureFor classifies a handler's error. ctx is the call's context: a
// DeadlineExceeded counts as CodeDeadline only when the call's own deadline
// passed, not when the handler's outbound call timed out.
func failureFor(ctx context.Context, req request, err error) remoteFailure {
	var no *notOwnerError
	switch {
	case errors.As(err, &no):
		return remoteFailure{code: CodeNotOwner, msg: err.Error(), callerRing: req.ring, serverRing: no.server}
	case errors.Is(err, ErrOverloaded):
		return remoteFailure{code: CodeOverloaded, msg: err.Error()}
	case errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return remoteFailure{code: CodeDeadline, msg: err.Error()}
	}
	return remoteFailure{code: CodeHandler, msg: err.Error()}
}

// errorPayload encodes an error frame payload: the code, the two ring
// versions for CodeNotOwner, then the message.
func (f remoteFailure) payload() []byte {
	p := make([]byte, 0, 1+16+len(f.msg))
	p = append(p, byte(f.code))
	if f.code == CodeNotOwner {
		p = binary.BigEndian.AppendUint64(p, f.callerRing)
		p = binary.BigEndian.AppendUint64(p, f.serverRing)
	}
	return append(p, f.msg...)
}

// decodeRemoteError turns an error frame payload into a *RemoteError.
func decodeRemoteError(addr, method string, p []byte) *RemoteError {
	e := &RemoteError{Addr: addr, Method: method}
	if len(p) == 0 {
		return e
	}
	e.Code, p = Code(p[0]), p[1:]
	if e.Code == CodeNotOwner && len(p) >= 16 {
		e.CallerRing, e.ServerRing = binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])
		p = p[16:]
	}
	e.Message = string(p)
	return e
}

// ringKey is the context key of WithRingVersion.
type ringKey struct{}

// ringCtx is a context carrying a ring version: one allocation, where
// context.WithValue with a uint64 makes two (the context, and the value
// boxed in an interface), on both sides of every call. Its Value for
// ringKey is the ringCtx itself.
type ringCtx struct {
	context.Context
	v uint64
}

func (c *ringCtx) Value(key any) any {
	if _, ok := key.(ringKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// WithRingVersion returns a context whose calls carry ring version v in
// their header. On the serving side, CallerRingVersion reads it back, and a
// NotOwner answer reports it.
func WithRingVersion(ctx context.Context, v uint64) context.Context {
	return &ringCtx{Context: ctx, v: v}
}

// CallerRingVersion returns the ring version the caller sent with the call
// being handled (0 when it sent none).
func CallerRingVersion(ctx context.Context) uint64 {
	if c, ok := ctx.Value(ringKey{}).(*ringCtx); ok {
		return c.v
	}
	return 0
}
