package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/wire"
)

// Traces (issue 17). The node is the only part that links OpenTelemetry:
// proxy and wire define small Tracer hooks and tracing implements them,
// so an embedder of proxy pays for no tracing library, and with tracing
// off the proxy and wire get nil Tracers and a request costs nothing more.
// tracing also implements the span of a config write's raft apply.

// tracerName names the instrumentation scope of every span.
const tracerName = "github.com/pingora-go/pingora-go"

// tracing is the node's OpenTelemetry part. It is built by New and holds
// no provider (so no goroutine) until start; before start and after stop
// every span is a no-op.
type tracing struct {
	on     bool
	cfg    config.Tracing
	res    []attribute.KeyValue  // the node's identity on every span
	export sdktrace.SpanExporter // Options.TraceExporter: in-memory, for tests
	prop   propagation.TraceContext

	provider atomic.Pointer[sdktrace.TracerProvider]
	tracer   atomic.Pointer[trace.Tracer]
	fast     fastSampling // set by start (tracing_fast.go)
}

var (
	_ proxy.Tracer = (*tracing)(nil)
	_ wire.Tracer  = (*tracing)(nil)
)

// newTracing decides whether the node traces: when the node file names an
// endpoint, the OTEL_* variables do (tracingEnabled), or a test supplies
// an exporter.
func newTracing(cfg *config.Node, opts Options) *tracing {
	return &tracing{
		on:     opts.TraceExporter != nil || tracingEnabled(cfg.Tracing, os.Getenv),
		cfg:    cfg.Tracing,
		export: opts.TraceExporter,
		res: []attribute.KeyValue{
			semconv.ServiceName("pingora-node"), semconv.ServiceVersion(opts.Version), semconv.ServiceInstanceID(cfg.Name),
		},
	}
}

// tracingEnabled reads the standard switches: OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none turn tracing off; an endpoint, from the node
// file or OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, turns it on.
func tracingEnabled(cfg config.Tracing, env func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(env("OTEL_SDK_DISABLED")), "true") || strings.TrimSpace(env("OTEL_TRACES_EXPORTER")) == "none" {
		return false
	}
	return cfg.Endpoint != "" || env("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// sampler is the node file's ratio, else nil when OTEL_TRACES_SAMPLER is
// set (the SDK reads it), else the default ratio; a client's sampled
// trace context is always followed (parent based).
func sampler(cfg config.Tracing, env func(string) string) sdktrace.Sampler {
	switch {
	case cfg.SampleRatio != nil:
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(*cfg.SampleRatio))
	case env("OTEL_TRACES_SAMPLER") != "":
		return nil
	}
	return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(config.DefaultTraceSampleRatio))
}

// endpointURL is the collector URL the exporter posts to: the node file's,
// with /v1/traces when it names no path.
func endpointURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err == nil && (u.Path == "" || u.Path == "/") {
		u.Path = "/v1/traces"
		return u.String()
	}
	return endpoint
}

// proxyTracer is the proxy's Tracer: nil (no cost) when tracing is off.
func (t *tracing) proxyTracer() proxy.Tracer {
	if !t.on {
		return nil
	}
	return t
}

// wireTracer is the cluster RPC's Tracer: nil when tracing is off.
func (t *tracing) wireTracer() wire.Tracer {
	if !t.on {
		return nil
	}
	return t
}

// start builds the exporter and the provider; spans are made from then on.
func (t *tracing) start() error { return t.startWith() }

// startWith is start with the span processor given (a benchmark's), in
// place of the exporter.
func (t *tracing) startWith(processor ...sdktrace.TracerProviderOption) error {
	if !t.on || t.provider.Load() != nil {
		return nil
	}
	ctx := context.Background()
	res, err := resource.New(ctx, resource.WithAttributes(t.res...), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && res == nil {
		return fmt.Errorf("tracing: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	fast, s := newFastSampling(t.cfg, os.Getenv)
	if s != nil {
		opts = append(opts, sdktrace.WithSampler(s))
	}
	t.fast = fast
	switch {
	case len(processor) > 0:
		opts = append(opts, processor...)
	case t.export != nil:
		opts = append(opts, sdktrace.WithSyncer(t.export))
	default:
		var eo []otlptracehttp.Option
		if t.cfg.Endpoint != "" {
			eo = append(eo, otlptracehttp.WithEndpointURL(endpointURL(t.cfg.Endpoint)))
		}
		exp, err := otlptracehttp.New(ctx, eo...)
		if err != nil {
			return fmt.Errorf("tracing: OTLP exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	p := sdktrace.NewTracerProvider(opts...)
	tr := p.Tracer(tracerName)
	t.tracer.Store(&tr)
	t.provider.Store(p)
	return nil
}

// stop flushes the spans still queued (for up to 5 s) and stops the
// provider; spans are no-ops after it. It may be called more than once.
func (t *tracing) stop() {
	p := t.provider.Swap(nil)
	if p == nil {
		return
	}
	t.tracer.Store(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.Shutdown(ctx)
}

// get returns the tracer, or nil when no provider runs.
func (t *tracing) get() trace.Tracer {
	if tr := t.tracer.Load(); tr != nil {
		return *tr
	}
	return nil
}

// StartCall implements wire.Tracer: a client span for a call made within
// a trace, whose context the call carries. A call made outside any trace
// (gossip-driven or background work) starts none.
func (t *tracing) StartCall(ctx context.Context, addr, method string) (context.Context, wire.TraceContext, func(error)) {
	tr, parent := t.get(), trace.SpanContextFromContext(ctx)
	if tr == nil || !parent.IsValid() {
		return ctx, wire.TraceContext{}, nil
	}
	if !parent.IsSampled() { // carry the decision on without a span
		return ctx, t.carried(ctx), nil
	}
	ctx, sp := tr.Start(ctx, method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		semconv.RPCSystemNameKey.String("pingora-wire"), semconv.RPCMethod(method), semconv.ServerAddress(addr)))
	return ctx, t.carried(ctx), func(err error) { endWithError(sp, err) }
}

// StartHandler implements wire.Tracer: a server span under the caller's
// trace context; a call that carried none starts no trace.
func (t *tracing) StartHandler(ctx context.Context, method string, tc wire.TraceContext) (context.Context, func(error)) {
	tr := t.get()
	if tr == nil || tc.Parent == "" {
		return ctx, nil
	}
	ctx = t.prop.Extract(ctx, propagation.MapCarrier{"traceparent": tc.Parent, "tracestate": tc.State})
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return ctx, nil
	}
	ctx, sp := tr.Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		semconv.RPCSystemNameKey.String("pingora-wire"), semconv.RPCMethod(method)))
	return ctx, func(err error) { endWithError(sp, err) }
}

// carried is the trace context of ctx's span, as a wire call carries it.
func (t *tracing) carried(ctx context.Context) wire.TraceContext {
	mc := propagation.MapCarrier{}
	t.prop.Inject(ctx, mc)
	return wire.TraceContext{Parent: mc["traceparent"], State: mc["tracestate"]}
}

// endWithError ends sp, marking it failed with err's text when err is set.
func endWithError(sp trace.Span, err error) {
	if err != nil {
		sp.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End()
}

// errorType is error.type for err: a proxy error's kind, else the
// error's Go type.
func errorType(err error) string {
	var pe *proxy.Error
	if errors.As(err, &pe) {
		return pe.Kind.String()
	}
	return fmt.Sprintf("%T", err)
}

// startConfigWrite begins the span of a config write's raft apply on this
// node, under the trace context of the admin request (a follower that
// forwards the write sends its own, so both nodes' spans are one trace).
// With tracing off the span is a no-op.
func (t *tracing) startConfigWrite(ctx context.Context, r *http.Request) (context.Context, trace.Span) {
	tr := t.get()
	if tr == nil {
		return ctx, trace.SpanFromContext(context.Background()) // the no-op span
	}
	ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	return tr.Start(ctx, "raft apply", trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(
		semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPath(r.URL.Path)))
}

// endConfigWrite ends a config write's span with the version it wrote, or
// its error; a write forwarded to the leader is not this node's failure
// (the leader's span, under this one, tells how it went).
func endConfigWrite(sp trace.Span, d consensus.Doc, err error, forwarded bool) {
	switch {
	case forwarded:
		sp.SetAttributes(attribute.Bool("pingora.config.forwarded", true))
		err = nil
	case err == nil:
		sp.SetAttributes(attribute.Int64("pingora.config.version", d.Version))
	}
	endWithError(sp, err)
}

// withSpan is r with sp in its context (not ctx's deadline), for a
// request sent on in sp's name.
func withSpan(r *http.Request, sp trace.Span) *http.Request {
	return r.WithContext(trace.ContextWithSpan(r.Context(), sp))
}

// startForwardedConfigWrite begins the span of a config write the
// follower from forwarded over the cluster RPC, under the RPC handler's
// span, which carries the follower's trace context: both nodes' spans are
// one trace.
func (t *tracing) startForwardedConfigWrite(ctx context.Context, from string) (context.Context, trace.Span) {
	tr := t.get()
	if tr == nil {
		return ctx, trace.SpanFromContext(context.Background()) // the no-op span
	}
	return tr.Start(ctx, "raft apply", trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("pingora.config.forwarded_by", from)))
}
