package node

import (
	"context"
	"net"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/pingora-go/pingora-go/proxy"
)

// Start implements proxy.Tracer with OpenTelemetry spans whose attributes
// follow the HTTP semantic conventions. A span under a parent that is not
// recorded (a request the sampler passed over) is not made: the parent's
// context goes upstream as it is, so the whole trace stays unrecorded and
// costs little.
func (t *tracing) Start(ctx context.Context, k proxy.SpanKind, s *proxy.Session, h http.Header) (context.Context, proxy.Span) {
	tr := t.get()
	if tr == nil {
		return ctx, nil
	}
	if k == proxy.SpanRequest {
		return t.startRequest(ctx, tr, s)
	}
	if parent := trace.SpanFromContext(ctx); !parent.IsRecording() {
		switch {
		case h == nil:
		case parent.SpanContext().IsValid():
			t.prop.Inject(ctx, propagation.HeaderCarrier(h))
		case s.TraceID != "": // decided unrecorded here (tracing_fast.go)
			injectUnsampled(h, s.TraceID)
		}
		return ctx, nil
	}
	kind := trace.SpanKindInternal
	if k == proxy.SpanAttempt {
		kind = trace.SpanKindClient
	}
	ctx, sp := tr.Start(ctx, k.String(), trace.WithSpanKind(kind))
	if k == proxy.SpanAttempt {
		sp.SetAttributes(attemptAttrs(s)...)
		t.prop.Inject(ctx, propagation.HeaderCarrier(h))
	}
	return ctx, spanEnd{sp: sp, kind: k}
}

// startRequest continues the client's trace (traceparent, tracestate) or
// starts one, and names it in the session for the access log.
func (t *tracing) startRequest(ctx context.Context, tr trace.Tracer, s *proxy.Session) (context.Context, proxy.Span) {
	if t.fast.on { // decide unrecorded requests without the SDK (tracing_fast.go)
		switch id, sampled, ok := traceparent(s.Req.Header["Traceparent"]); {
		case ok && !sampled:
			s.TraceID = id
			return ctx, nil
		case !ok && !t.fast.record():
			s.TraceID = newTraceID()
			return ctx, nil
		}
	}
	ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(s.Req.Header))
	ctx, sp := tr.Start(ctx, s.Req.Method, trace.WithSpanKind(trace.SpanKindServer))
	s.TraceID = sp.SpanContext().TraceID().String()
	if sp.IsRecording() {
		sp.SetAttributes(requestAttrs(s)...)
	}
	return ctx, spanEnd{sp: sp, kind: proxy.SpanRequest}
}

// spanEnd is a proxy span: End adds what the step left to the span.
type spanEnd struct {
	sp   trace.Span
	kind proxy.SpanKind
}

func (e spanEnd) End(s *proxy.Session, end proxy.SpanEnd) {
	sp := e.sp
	if !sp.IsRecording() {
		sp.End()
		return
	}
	switch e.kind {
	case proxy.SpanRequest:
		endRequest(sp, s, end)
	case proxy.SpanAttempt:
		endAttempt(sp, s, end)
	case proxy.SpanCacheLookup:
		sp.SetAttributes(attribute.Bool("pingora.cache.found", end.Found))
	case proxy.SpanRateLimit:
		sp.SetAttributes(attribute.Bool("pingora.ratelimit.allowed", end.Status == 0))
		if end.Status != 0 {
			sp.SetAttributes(semconv.HTTPResponseStatusCode(end.Status))
		}
	}
	endWithError(sp, end.Err)
}

// requestAttrs are a downstream request's attributes known at its start.
func requestAttrs(s *proxy.Session) []attribute.KeyValue {
	r := s.Req
	a := make([]attribute.KeyValue, 0, 9)
	a = append(a, semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPath(r.Path()), semconv.URLScheme(scheme(s)),
		semconv.NetworkProtocolName("http"), semconv.NetworkProtocolVersion(protoVersion(r.ProtoMajor, r.ProtoMinor)),
		semconv.ClientAddress(s.ClientIP))
	host, port := splitHostPort(r.Host)
	a = append(a, semconv.ServerAddress(host))
	if port > 0 {
		a = append(a, semconv.ServerPort(port))
	}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		a = append(a, semconv.UserAgentOriginal(ua))
	}
	return a
}

// endRequest names the span "METHOD route" and adds its outcome; a 5xx
// marks it failed (a server span's 4xx is the client's error, not ours).
func endRequest(sp trace.Span, s *proxy.Session, e proxy.SpanEnd) {
	if s.Route != "" {
		sp.SetName(s.Req.Method + " " + s.Route)
		sp.SetAttributes(semconv.HTTPRoute(s.Route))
	}
	if s.Status > 0 {
		sp.SetAttributes(semconv.HTTPResponseStatusCode(s.Status))
	}
	if s.CacheStatus != "" {
		sp.SetAttributes(attribute.String("pingora.cache.status", s.CacheStatus))
	}
	if e.Err == nil && s.Status >= 500 {
		sp.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(s.Status)))
		sp.SetStatus(codes.Error, "")
	}
}

// attemptAttrs are an upstream attempt's attributes known at its start:
// the peer, the protocol, the retry number.
func attemptAttrs(s *proxy.Session) []attribute.KeyValue {
	a := make([]attribute.KeyValue, 0, 8)
	a = append(a, semconv.HTTPRequestMethodKey.String(s.Req.Method), semconv.NetworkProtocolName("http"))
	if p := s.Peer; p != nil {
		host, port := splitHostPort(p.Addr)
		a = append(a, semconv.ServerAddress(host), semconv.ServerPort(port), attribute.String("pingora.upstream.protocol", p.Protocol.String()))
		v := "1.1"
		if p.Protocol != proxy.HTTP1 {
			v = "2"
		}
		a = append(a, semconv.NetworkProtocolVersion(v))
	}
	if s.Retries > 0 {
		a = append(a, semconv.HTTPRequestResendCount(s.Retries))
	}
	return a
}

// endAttempt adds the attempt's outcome: the upstream's status (4xx and
// 5xx mark a client span failed), whether the connection was reused, how
// long a new one took to connect.
func endAttempt(sp trace.Span, s *proxy.Session, e proxy.SpanEnd) {
	sp.SetAttributes(attribute.Bool("pingora.upstream.connection_reused", s.ConnReused))
	if !s.ConnReused && s.ConnectTime > 0 {
		sp.SetAttributes(attribute.Float64("pingora.upstream.connect_ms", float64(s.ConnectTime.Microseconds())/1000))
	}
	if e.Status > 0 {
		sp.SetAttributes(semconv.HTTPResponseStatusCode(e.Status))
	}
	if e.Err == nil && e.Status >= 400 {
		sp.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(e.Status)))
		sp.SetStatus(codes.Error, "")
	}
}

func scheme(s *proxy.Session) string {
	if s.TLS != nil {
		return "https"
	}
	return "http"
}

func protoVersion(major, minor int) string {
	if major == 2 {
		return "2"
	}
	return strconv.Itoa(major) + "." + strconv.Itoa(minor)
}

// splitHostPort splits "host:port"; port is 0 when absent or not a number.
func splitHostPort(hp string) (string, int) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, 0
	}
	port, _ := strconv.Atoi(p)
	return host, port
}
