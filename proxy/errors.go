package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"

	"github.com/pingora-go/pingora-go/proxy/h1"
)

// Kind classifies what went wrong while proxying a request.
type Kind uint8

// The kinds of Error. statusFor maps each to the status the client sees.
const (
	KindInternal         Kind = iota // a bug or an unexpected failure
	KindConnectRefused               // the upstream refused the TCP connection
	KindConnectTimeout               // the TCP connect timed out
	KindConnectError                 // any other dial failure (unreachable, DNS)
	KindTLSHandshake                 // upstream TLS handshake or verification failed
	KindReadTimeout                  // no bytes within the read idle or response header timeout
	KindWriteTimeout                 // a write made no progress within the write idle timeout
	KindConnectionClosed             // the peer closed or reset the connection
	KindInvalidResponse              // the upstream sent a malformed response
	KindInvalidRequest               // the client sent a malformed request
	KindBodyTooLarge                 // the request body exceeded the route's limit
	KindNoRoute                      // no route matched the request
	KindNoHealthyPeer                // every peer of the upstream group is unhealthy
	KindClientCanceled               // the client went away
	KindProtocol                     // an HTTP/2 protocol or stream error
	KindUpstreamStatus               // the upstream answered a status configured for retry
	// KindInvalidUpstreamRequest: the request as a phase left it would not
	// parse back as the same request upstream (CR, LF or a space in the
	// method, target, host or a field); nothing was sent.
	KindInvalidUpstreamRequest
	// KindPeerBusy: the peer had ConnLimit.Max connections in use and no
	// slot was freed for the request in time (or its queue was full).
	KindPeerBusy
	// KindLocalResources: this process could not open the upstream
	// connection for want of descriptors (EMFILE, ENFILE: the open-file
	// limit), buffers or memory. Not the peer's failure: it does not count
	// against the peer's passive health, and the request is not retried.
	KindLocalResources
)

var kindNames = [...]string{
	KindInternal:         "internal",
	KindConnectRefused:   "connect_refused",
	KindConnectTimeout:   "connect_timeout",
	KindConnectError:     "connect_error",
	KindTLSHandshake:     "tls_handshake",
	KindReadTimeout:      "read_timeout",
	KindWriteTimeout:     "write_timeout",
	KindConnectionClosed: "connection_closed",
	KindInvalidResponse:  "invalid_response",
	KindInvalidRequest:   "invalid_request",
	KindBodyTooLarge:     "body_too_large",
	KindNoRoute:          "no_route",
	KindNoHealthyPeer:    "no_healthy_peer",
	KindClientCanceled:   "client_canceled",
	KindProtocol:         "protocol",
	KindUpstreamStatus:   "upstream_status",

	KindInvalidUpstreamRequest: "invalid_upstream_request",
	KindPeerBusy:               "peer_busy",
	KindLocalResources:         "local_resources",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Source says which side of the proxy an Error came from.
type Source uint8

// The sources of an Error.
const (
	Internal Source = iota
	Upstream
	Downstream
)

func (s Source) String() string {
	switch s {
	case Upstream:
		return "upstream"
	case Downstream:
		return "downstream"
	}
	return "internal"
}

// Error is the error type of the proxy engine. Phases receive it and may
// return their own; the engine reads Kind, Source and Retry with errors.As.
type Error struct {
	Kind   Kind
	Source Source
	// Retry reports that the request may be sent again to another peer:
	// nothing of it reached the upstream, or it is safe to replay.
	// FailToConnect and ErrorWhileProxy may change it.
	Retry bool
	// Status overrides the status statusFor would choose, when non-zero.
	Status int
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("proxy: %s %s", e.Source, e.Kind)
	}
	return fmt.Sprintf("proxy: %s %s: %v", e.Source, e.Kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

func newError(k Kind, src Source, err error) *Error { return &Error{Kind: k, Source: src, Err: err} }

// ErrNoRoute is returned by Router when no route matches the request.
var ErrNoRoute = &Error{Kind: KindNoRoute, Source: Internal, Status: http.StatusNotFound}

// StatusFor returns the HTTP status for err as the engine answers it: 502
// for upstream failures, 504 for upstream timeouts, 499 when the client went
// away, 4xx for bad requests, 500 for anything unclassified.
func StatusFor(err error) int {
	var pe *Error
	if !errors.As(err, &pe) {
		var he *h1.ParseError
		if errors.As(err, &he) {
			return he.Status
		}
		return http.StatusInternalServerError
	}
	if pe.Status != 0 {
		return pe.Status
	}
	switch pe.Kind {
	case KindConnectTimeout, KindReadTimeout, KindWriteTimeout:
		if pe.Source == Downstream {
			return http.StatusRequestTimeout
		}
		return http.StatusGatewayTimeout
	case KindConnectRefused, KindConnectError, KindTLSHandshake, KindInvalidResponse, KindConnectionClosed, KindProtocol:
		if pe.Source == Downstream {
			return 499
		}
		return http.StatusBadGateway
	case KindInvalidRequest:
		return http.StatusBadRequest
	case KindBodyTooLarge:
		return http.StatusRequestEntityTooLarge
	case KindNoRoute:
		return http.StatusNotFound
	case KindNoHealthyPeer, KindPeerBusy, KindLocalResources:
		return http.StatusServiceUnavailable
	case KindClientCanceled:
		return 499
	case KindInvalidUpstreamRequest:
		// The client's request was valid (it passed the downstream
		// checks); the proxy's own code made it unsendable: a server
		// error, not the upstream's (502) nor the client's (400).
		return http.StatusInternalServerError
	}
	return http.StatusInternalServerError
}

// unwritable is the error for a request head the upstream writer refused
// (h1.ErrUnwritable): internal, so the peer's health does not pay for it,
// and never retried, as every peer would refuse it alike.
func unwritable(err error) *Error {
	return &Error{Kind: KindInvalidUpstreamRequest, Source: Internal, Err: err}
}

// classifyDial turns a dial error into an Error.
func classifyDial(err error) *Error {
	k := KindConnectError
	switch {
	case localShortage(err):
		// The socket could not be made here: blaming the peer ejected
		// healthy peers by passive health at the open-file limit, and
		// every client got 503 for the cool-off after it had passed.
		return &Error{Kind: KindLocalResources, Source: Internal, Err: err}
	case isTimeout(err):
		k = KindConnectTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		k = KindConnectRefused
	}
	return &Error{Kind: k, Source: Upstream, Retry: true, Err: err}
}

// localShortage reports whether a dial failed for want of this process's
// or the system's descriptors, buffers or memory.
func localShortage(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// classifyIO turns an error from reading or writing a connection of side
// src into an Error.
func classifyIO(err error, src Source) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	var he *h1.ParseError
	switch {
	case errors.As(err, &he):
		if src == Downstream {
			return &Error{Kind: KindInvalidRequest, Source: src, Status: he.Status, Err: err}
		}
		return newError(KindInvalidResponse, src, err)
	case errors.Is(err, h1.ErrBodyTooLarge):
		return newError(KindBodyTooLarge, src, err)
	case errors.Is(err, context.Canceled) && src == Downstream:
		return newError(KindClientCanceled, src, err)
	case isTimeout(err):
		return newError(KindReadTimeout, src, err)
	}
	return newError(KindConnectionClosed, src, err)
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
