package proxy

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// What the engine makes of a failed attempt: whose fault it was, what the
// peer's health record hears, and whether the request goes to another peer.

// clientFault returns err as the client's when the attempt failed because
// of the client: its request body failed, or it left (its context was
// cancelled for any cause but the gRPC deadline, which
// grpcDeadlineExpired reports) while the upstream was dialled, written or
// waited for.
func clientFault(sess *Session, body *reqBody, err error) error {
	if body.err != nil {
		return classifyIO(body.err, Downstream)
	}
	if sess.ctx.Err() == nil {
		return err
	}
	if cause := context.Cause(sess.ctx); !errors.Is(cause, errGRPCDeadline) {
		var pe *Error
		if errors.As(err, &pe) && pe.Source == Downstream {
			return err
		}
		return newError(KindClientCanceled, Downstream, cause)
	}
	return err
}

// onAttemptError counts the error and lets FailToConnect or ErrorWhileProxy
// see it and decide on a retry.
func (s *Server[C]) onAttemptError(sess *Session, ctx C, peer *Peer, err error) error {
	var pe *Error
	if !errors.As(err, &pe) {
		return err
	}
	if pe.Source == Upstream {
		s.metrics.upstreamErrors.WithLabelValues(pe.Kind.String()).Inc()
	}
	if pe.Kind == KindInvalidUpstreamRequest && s.rejectLog.allow(time.Now().Unix()) {
		s.errLog.Warn("upstream request refused", "route", sess.Route, "peer", peer.Addr, "err", pe)
	}
	switch pe.Kind {
	case KindConnectRefused, KindConnectTimeout, KindConnectError, KindTLSHandshake:
		if p := s.ph.failConnect; p != nil {
			if e := p.FailToConnect(sess, peer, ctx, pe); e != nil {
				return e
			}
		}
	default:
		if p := s.ph.errProxy; p != nil && pe.Source == Upstream {
			if e := p.ErrorWhileProxy(sess, peer, ctx, pe); e != nil {
				return e
			}
		}
	}
	return pe
}

// shouldRetry decides whether a failed attempt goes to another peer: the
// error allows it, the budget is not spent, the client has seen nothing, and
// the request can be sent again: nothing of it was sent, or it is
// idempotent or its whole body is held in memory.
func (s *Server[C]) shouldRetry(sess *Session, err error, body *reqBody) bool {
	var pe *Error
	if !errors.As(err, &pe) || !pe.Retry || !canRetry(sess, body) {
		return false
	}
	return body.rewind()
}

// canRetry reports whether another attempt may start: budget and time
// left, nothing sent to the client, and the request replayable. The body
// must not be streaming (see exchange.stopBody).
func canRetry(sess *Session, body *reqBody) bool {
	if !retryLeft(sess) {
		return false
	}
	if !body.handed {
		return true
	}
	if !idempotent(sess.Req.Method) && !body.complete() {
		return false
	}
	return body.replayable()
}

// finishAttempt releases the peer's in-flight count and reports the
// outcome to its health record: only failures of the upstream count.
func finishAttempt(sess *Session, err error) {
	t := sess.attempt
	if t.rec == nil {
		return
	}
	sess.attempt = attemptTrack{}
	t.rec.State().InFlight.Add(-1)
	if err == nil { // the common case, without errors.As's allocation
		t.rec.ObserveProxy(true, "", t.passive)
		return
	}
	var pe *Error
	if errors.As(err, &pe) && (pe.Kind == KindPeerBusy || pe.Kind == KindLocalResources) {
		return // the peer was never asked: no verdict either way
	}
	failed := pe != nil && pe.Source == Upstream
	msg := ""
	if failed {
		msg = pe.Kind.String()
		if pe.Kind == KindUpstreamStatus {
			msg = "status " + strconv.Itoa(pe.Status)
		}
	}
	t.rec.ObserveProxy(!failed, msg, t.passive)
}

// retryLeft reports whether another attempt may start as far as the
// budget, the time and the client are concerned.
func retryLeft(sess *Session) bool {
	if sess.ds.started() || sess.Retries >= sess.MaxRetries || sess.ctx.Err() != nil {
		return false
	}
	return sess.RetryTimeout <= 0 || time.Since(sess.Start) < sess.RetryTimeout
}

func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func retryStatus(sess *Session, code int) bool {
	for _, c := range sess.RetryOnStatus {
		if c == code {
			return true
		}
	}
	return false
}
