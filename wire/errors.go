package wire

import (
	"errors"
	"fmt"
)

// ErrPeerGone is returned (wrapped, with the cause) when the peer cannot be
// dialled or the connection dies while a call is pending. Pending calls fail
// as soon as the connection is seen to be dead, not at their deadline.
var ErrPeerGone = errors.New("wire: peer gone")

// ErrClosed is returned by calls on a closed Client and by Serve after Close.
var ErrClosed = errors.New("wire: closed")

// ErrUnknownMethod matches (with errors.Is) a RemoteError for a method the
// peer has no handler for.
var ErrUnknownMethod = errors.New("wire: unknown method")

// Error codes carried in the first byte of an error frame's payload.
const (
	codeHandler       byte = 0
	codeUnknownMethod byte = 1
)

// RemoteError is a handler error (or an unknown method) reported by the peer.
// Message is the handler error's text; the error value itself does not cross
// the wire.
type RemoteError struct {
	Addr          string
	Method        string
	Message       string
	UnknownMethod bool
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("wire: %s %s: remote error: %s", e.Addr, e.Method, e.Message)
}

// Is reports whether target is ErrUnknownMethod and e is one.
func (e *RemoteError) Is(target error) bool {
	return target == ErrUnknownMethod && e.UnknownMethod
}

// errorPayload encodes an error frame payload.
func errorPayload(code byte, msg string) []byte {
	return append([]byte{code}, msg...)
}

// decodeRemoteError turns an error frame payload into a *RemoteError.
func decodeRemoteError(addr, method string, p []byte) *RemoteError {
	e := &RemoteError{Addr: addr, Method: method}
	if len(p) > 0 {
		e.UnknownMethod = p[0] == codeUnknownMethod
		e.Message = string(p[1:])
	}
	return e
}
