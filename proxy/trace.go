package proxy

import (
	"context"
	"net/http"
)

// Tracing (issue 17). The engine marks the steps of a request for a
// Tracer the embedder supplies (Config.Tracer); it knows nothing of the
// tracing library behind it, so an embedder that wants no tracing links
// none, and one that wants OpenTelemetry (as pingora-node does) or
// anything else plugs it in. With no Tracer every mark is one nil check:
// a request allocates nothing more (BenchmarkProxyH1).

// SpanKind names the step of a request a span covers.
type SpanKind uint8

// The steps the engine marks.
const (
	// SpanRequest covers a downstream request, from its head read to its
	// last byte sent. The Tracer continues the client's trace, read from
	// s.Req.Header (traceparent, tracestate), or starts one.
	SpanRequest SpanKind = iota + 1
	// SpanAttempt covers one upstream attempt, from choosing the peer to
	// the end of the response body. The Tracer writes the trace context
	// the upstream continues into the attempt's request fields.
	SpanAttempt
	// SpanCacheLookup covers looking the request up in its cache store
	// (for a store shared by a cluster, the call to the key's owner).
	SpanCacheLookup
	// SpanRateLimit covers the Limiter's decision on the request.
	SpanRateLimit
)

// String is the kind's name, as a span name or in logs.
func (k SpanKind) String() string {
	switch k {
	case SpanRequest:
		return "request"
	case SpanAttempt:
		return "upstream attempt"
	case SpanCacheLookup:
		return "cache lookup"
	case SpanRateLimit:
		return "rate limit"
	}
	return "unknown"
}

// Tracer receives the spans of requests (Config.Tracer). A nil Tracer
// turns tracing off, at no cost.
type Tracer interface {
	// Start begins a span of kind k for the request s, as a child of the
	// span in ctx, and returns ctx carrying the new span. For
	// SpanRequest, ctx carries no span yet: the parent is the client's
	// trace context in s.Req.Header, and Start sets s.TraceID. For
	// SpanAttempt, h is the attempt's request fields, into which Start
	// writes the trace context the upstream continues (replacing the
	// client's); h is nil for the other kinds. Start runs on the request's
	// path: it must not block.
	Start(ctx context.Context, k SpanKind, s *Session, h http.Header) (context.Context, Span)
}

// Span is a span begun by a Tracer.
type Span interface {
	// End ends the span. s holds what the step left (Peer, Retries,
	// ConnReused, Status, Route, CacheStatus, ...); e says how it ended.
	End(s *Session, e SpanEnd)
}

// SpanEnd is how a marked step ended.
type SpanEnd struct {
	// Status is the HTTP status: the one sent to the client (SpanRequest),
	// the upstream's (SpanAttempt), or the one a rejecting Limiter answers
	// (SpanRateLimit); 0 when there is none.
	Status int
	// Found reports that a cache lookup found a stored response
	// (SpanCacheLookup).
	Found bool
	// Err is the step's error, or nil.
	Err error
}

// startSpan begins a span of kind k for sess when a Tracer is set, and
// returns the context to carry on with; with none it returns sess.ctx and
// a nil Span.
func (s *Server[C]) startSpan(sess *Session, k SpanKind, h http.Header) (context.Context, Span) {
	t := s.cfg.Tracer
	if t == nil {
		return sess.ctx, nil
	}
	return t.Start(sess.ctx, k, sess, h)
}

// endSpan ends sp, if a span was begun.
func endSpan(sp Span, sess *Session, e SpanEnd) {
	if sp != nil {
		sp.End(sess, e)
	}
}
