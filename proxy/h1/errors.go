package h1

import (
	"errors"
	"fmt"
)

// ParseError is returned when a message head or body framing is malformed.
// Status is the HTTP status a server should answer with (400, 413, 414, 431,
// 501, 505); for responses read from an upstream it is 502.
type ParseError struct {
	Status int
	Reason string
}

func (e *ParseError) Error() string { return fmt.Sprintf("h1: %s (status %d)", e.Reason, e.Status) }

func perr(status int, format string, args ...any) error {
	return &ParseError{Status: status, Reason: fmt.Sprintf(format, args...)}
}

var (
	// ErrHeaderTooLarge is wrapped in the ParseError returned when a head
	// exceeds Limits.MaxHeaderBytes or Limits.MaxHeaders.
	ErrHeaderTooLarge = errors.New("h1: header too large")
	// ErrBodyTooLarge is returned by a BodyReader whose limit was exceeded.
	ErrBodyTooLarge = errors.New("h1: body exceeds limit")
	// ErrUnexpectedEOF is returned when the peer closes inside a message.
	ErrUnexpectedEOF = errors.New("h1: unexpected EOF inside message")
)

// StatusOf returns the status code a server should answer for err: the
// ParseError status when err is one, 413 for ErrBodyTooLarge, else 400.
func StatusOf(err error) int {
	var pe *ParseError
	if errors.As(err, &pe) {
		return pe.Status
	}
	if errors.Is(err, ErrBodyTooLarge) {
		return 413
	}
	return 400
}
