package proxy

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Limiter is the rate-limit hook (Config.Limiter). The engine calls Limit
// once per request, after RequestFilter (so Session.Route is set) and
// before the request body is read or UpstreamPeer runs. Limit runs on
// every request: it must decide from local state and return quickly, never
// waiting on the network. prev is nil on the first call; after a decision
// that asked to Wait, the engine holds the request that long and calls
// Limit again with that decision, its Waited holding the total held so
// far. The cache's own requests (Session.Background: a stale response's
// refresh, a fill run for another node with FillCache) are not clients'
// and are not limited. The node's cluster limiter implements it through
// ratelimit; an embedding user may implement it with ratelimit/estimator
// alone (see ExampleLimiter).
type Limiter interface {
	Limit(s *Session, prev *LimitDecision) LimitDecision
}

// LimiterActive is an optional capability of a Limiter, found once by
// New: Active reports whether the Limiter has anything to decide at all
// (a node whose config has no rules). While it reports false the engine
// skips the Limiter, and its span, for the request.
type LimiterActive interface {
	Active() bool
}

// LimitDecision is a Limiter's answer. The zero value admits the request.
type LimitDecision struct {
	// Deny refuses the request: 429 Too Many Requests with Retry-After and
	// the fields below, or for gRPC a trailers-only RESOURCE_EXHAUSTED
	// (8) status carrying the same fields. With Wait set it holds the
	// request instead.
	Deny bool
	// Wait, with Deny, holds the request this long and asks again (an
	// on_exceed: delay rule); the client's going away ends the wait.
	Wait time.Duration
	// RetryAfter is sent as Retry-After on a refusal, in whole seconds
	// rounded up (at least 1).
	RetryAfter time.Duration
	// Policy and State are the RateLimit-Policy and RateLimit field values
	// (draft-ietf-httpapi-ratelimit-headers); "" sends none. On an admitted
	// request they are added to its response.
	Policy, State string
	// Resume is the limiter's own bookmark for the call after a Wait; the
	// engine passes it back untouched.
	Resume int
	// Waited is set by the engine on prev: how long the request has been
	// held so far.
	Waited time.Duration
}

// maxLimitWaits bounds the rounds of one request's waits, whatever the
// limiter answers.
const maxLimitWaits = 64

// limit runs the Limiter, in a SpanRateLimit span: it returns handled
// when it answered the request itself (429), or the client's error when
// it left during a wait.
func (s *Server[C]) limit(sess *Session) (handled bool, err error) {
	l := s.cfg.Limiter
	if l == nil || sess.Background || s.limitActive != nil && !s.limitActive.Active() {
		return false, nil
	}
	_, sp := s.startSpan(sess, SpanRateLimit, nil)
	status := 0
	defer func() { endSpan(sp, sess, SpanEnd{Status: status, Err: err}) }()
	d := l.Limit(sess, nil)
	for i := 0; d.Deny && d.Wait > 0; i++ {
		if i == maxLimitWaits {
			d.Wait = 0
			break
		}
		t := time.NewTimer(d.Wait)
		select {
		case <-sess.ctx.Done():
			t.Stop()
			return false, &Error{Kind: KindClientCanceled, Source: Downstream, Err: sess.ctx.Err()}
		case <-t.C:
		}
		prev := d
		prev.Waited += d.Wait
		d = l.Limit(sess, &prev)
		d.Waited = prev.Waited
	}
	if !d.Deny {
		sess.limitPolicy, sess.limitState = d.Policy, d.State
		return false, nil
	}
	status = http.StatusTooManyRequests
	return true, s.rejectLimited(sess, d)
}

// rejectLimited answers 429, or RESOURCE_EXHAUSTED for gRPC.
func (s *Server[C]) rejectLimited(sess *Session, d LimitDecision) error {
	h := http.Header{"Retry-After": {retryAfter(d.RetryAfter)}}
	addLimitFields(h, d.Policy, d.State)
	if isGRPC(sess.Req) {
		s.writeGRPCStatus(sess, grpcResourceExhausted, "rate limited", h, http.StatusTooManyRequests)
		return nil
	}
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	err := sess.Respond(http.StatusTooManyRequests, h, errorBody(http.StatusTooManyRequests))
	if errors.Is(err, ErrResponseStarted) {
		return nil
	}
	return err
}

// retryAfter renders d as delay-seconds: whole seconds rounded up, at
// least 1.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(max(int64(math.Ceil(d.Seconds())), 1), 10)
}

// addLimitFields sets the RateLimit-Policy and RateLimit fields, when
// there are any.
func addLimitFields(h http.Header, policy, state string) {
	if policy != "" {
		h["Ratelimit-Policy"] = []string{policy}
	}
	if state != "" {
		h["Ratelimit"] = []string{state}
	}
}
