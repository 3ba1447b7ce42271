package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
)

// A panic in the code a request runs (a phase, the Limiter, the Tracer, a
// cache Store) fails that request only, as net/http does for a handler
// and Pingora for a task: handle recovers it, the request's connection
// and stream are dealt with as their state allows, and the process and
// every other request go on.

// ErrPanic is wrapped by the error a request fails with when code it ran
// panicked (Logging sees it: errors.Is(err, ErrPanic)); the panic's value
// follows it in the error's text.
var ErrPanic = errors.New("proxy: panic")

// endStep is how far a request's end (endRequest) has come: after a panic,
// the end resumes past the step that panicked.
type endStep uint8

const (
	stepRun      endStep = iota // the phases, FailToProxy
	stepOpenSpan                // an attempt's or cache lookup's span a panic left open ends
	stepCache                   // cacheEnd: the fill the request holds ends
	stepSpan                    // the request's span ends
	stepObserve                 // metrics and the access log
	stepLogging                 // the Logging phase
	stepDone
)

// endRequest ends a request whose phases ran, from step *at on: the
// cache's part, the spans, metrics and the access log, then Logging. *at
// names the step under way, so that a panic in one (recovered) resumes
// past it.
func (s *Server[C]) endRequest(sess *Session, ctx C, span Span, err error, at *endStep) {
	for ; *at < stepDone; *at++ {
		switch *at {
		case stepOpenSpan:
			if sp := sess.openSpan; sp != nil {
				sess.openSpan = nil
				sp.End(sess, SpanEnd{Err: err})
			}
		case stepCache:
			s.cacheEnd(sess, err)
		case stepSpan:
			endSpan(span, sess, SpanEnd{Status: sess.Status, Err: err})
		case stepObserve:
			s.observe(sess, err)
		case stepLogging:
			if p := s.ph.logging; p != nil {
				p.Logging(sess, ctx, err)
			}
		}
	}
}

// recovered ends a request after the panic v, recovered in handle while
// step at was under way; err is the request's error so far. A panic in
// the phases fails the request: what it held upstream is let go and the
// client gets a 500, or a cut response when its head went out already.
// Then the rest of the end runs, so the request is counted, logged and
// given to Logging as any other (with an error wrapping ErrPanic). A
// panic after the response (in Logging, say) changes nothing the client
// sees, and an HTTP/1.1 connection then stays open: its framing is sound.
func (s *Server[C]) recovered(sess *Session, ctx C, span Span, at endStep, err error, v any) {
	perr := s.panicked(sess, v)
	if at == stepRun {
		err = perr
		releaseAfterPanic(sess)
		s.failPanicked(sess, perr, v == http.ErrAbortHandler)
	}
	for at++; at < stepDone; {
		s.endGuarded(sess, ctx, span, err, &at)
	}
}

// endGuarded is endRequest, where a step that panics is recorded (see
// panicked) and skipped.
func (s *Server[C]) endGuarded(sess *Session, ctx C, span Span, err error, at *endStep) {
	defer func() {
		if v := recover(); v != nil {
			s.panicked(sess, v)
			*at++
		}
	}()
	s.endRequest(sess, ctx, span, err, at)
}

// panicked records the panic v of sess's code: one error log line with its
// value and stack, and pingora_panics_total. http.ErrAbortHandler is an
// abort that a phase asked for, as net/http has it: neither logged nor
// counted. It returns the error the request fails with.
func (s *Server[C]) panicked(sess *Session, v any) *Error {
	if v == http.ErrAbortHandler {
		return &Error{Kind: KindInternal, Source: Internal, Err: http.ErrAbortHandler}
	}
	text := fmt.Sprint(v) // fmt survives a value whose Error or String panics
	var method, host, path string
	if r := sess.Req; r != nil {
		method, host, path = r.Method, r.Host, r.Path()
	}
	s.errLog.Error("panic serving a request", "panic", text, "method", method, "host", host, "path", path,
		"route", sess.Route, "client", sess.ClientIP, "background", sess.Background, "stack", string(debug.Stack()))
	s.metrics.panics.Inc() // after the line: one counted is one logged
	return &Error{Kind: KindInternal, Source: Internal, Err: fmt.Errorf("%w: %s", ErrPanic, text)}
}

// releaseAfterPanic lets go of what a request holds upstream and frees
// only on the normal path: its exchange (the connection, which is closed,
// the peer's connection slot, and a request body writer still running,
// which is stopped and waited for) and the peer's in-flight count, with
// no health verdict (the peer did nothing wrong). The rest is freed by
// defers on the way up (buffers, a cache reader) or by the end (a fill).
func releaseAfterPanic(sess *Session) {
	if ex := sess.ex; ex != nil {
		sess.ex = nil
		ex.release(false) // a no-op when the engine released it already
	}
	if t := sess.attempt; t.rec != nil {
		sess.attempt = attemptTrack{}
		t.rec.State().InFlight.Add(-1)
	}
}

// failPanicked answers a request whose phases panicked: a 500 (a gRPC
// INTERNAL status for gRPC) when nothing was sent yet, else the response
// is cut (HTTP/2: the stream is reset). No phase runs for it, FailToProxy
// and ResponseFilter included: the App's code is what failed. An HTTP/1.1
// connection closes after it, whatever the request's framing was, as its
// state is unknown. An abort (http.ErrAbortHandler) gets no answer: the
// HTTP/1.1 connection closes, the HTTP/2 stream is reset.
func (s *Server[C]) failPanicked(sess *Session, err error, abort bool) {
	if d, ok := sess.ds.(*h1Downstream); ok {
		d.keepAlive = false
	}
	code := http.StatusInternalServerError
	if sess.ds.started() || abort {
		sess.ds.abort() // HTTP/2 before the head: the stream is reset as it ends unanswered
		if sess.Status == 0 {
			sess.Status = code
		}
		return
	}
	if isGRPC(sess.Req) {
		s.writeGRPCError(sess, err, code)
		return
	}
	s.writeError(sess, code)
}

// logRejected runs Logging for a request refused before the phases (see
// rejectH1), with a panic in it or in NewCtx recorded as handle does.
func (s *Server[C]) logRejected(sess *Session, err error) {
	p := s.ph.logging
	if p == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			s.panicked(sess, v)
		}
	}()
	p.Logging(sess, s.app.NewCtx(), err)
}
