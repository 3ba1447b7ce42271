package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/internal/logtest"
	"github.com/pingora-go/pingora-go/proxy/cache"
)

// recTracer records spans. Its span IDs count up from 1; the trace
// context it writes upstream is "span-<id>", and a request's trace ID is
// the client's traceparent (or "new").
type recTracer struct {
	mu    sync.Mutex
	spans []*recSpan
}

type recSpan struct {
	t            *recTracer
	id           int
	parent       int // 0: none
	kind         SpanKind
	parentHeader string // the client's traceparent, for SpanRequest

	ended   bool
	end     SpanEnd
	peer    string
	retries int
	reused  bool
	route   string
	cacheSt string
}

type recSpanKey struct{}

func (rt *recTracer) Start(ctx context.Context, k SpanKind, s *Session, h http.Header) (context.Context, Span) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	sp := &recSpan{t: rt, id: len(rt.spans) + 1, kind: k}
	if p, ok := ctx.Value(recSpanKey{}).(*recSpan); ok {
		sp.parent = p.id
	}
	if k == SpanRequest {
		sp.parentHeader = s.Req.Header.Get("Traceparent")
		s.TraceID = "new"
		if sp.parentHeader != "" {
			s.TraceID = sp.parentHeader
		}
	}
	if h != nil {
		h.Set("Traceparent", fmt.Sprintf("span-%d", sp.id))
	}
	rt.spans = append(rt.spans, sp)
	return context.WithValue(ctx, recSpanKey{}, sp), sp
}

func (sp *recSpan) End(s *Session, e SpanEnd) {
	sp.t.mu.Lock()
	defer sp.t.mu.Unlock()
	sp.ended, sp.end = true, e
	if s.Peer != nil {
		sp.peer = s.Peer.Addr
	}
	sp.retries, sp.reused, sp.route, sp.cacheSt = s.Retries, s.ConnReused, s.Route, s.CacheStatus
}

func (rt *recTracer) snapshot() []recSpan {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := make([]recSpan, len(rt.spans))
	for i, sp := range rt.spans {
		out[i] = *sp
	}
	return out
}

// waitSpans waits until n spans ended (the request span ends after the
// client has its response).
func (rt *recTracer) waitSpans(t *testing.T, n int) []recSpan {
	t.Helper()
	var got []recSpan
	waitFor(t, 5*time.Second, fmt.Sprintf("%d ended spans", n), func() bool {
		got = got[:0]
		for _, sp := range rt.snapshot() {
			if sp.ended {
				got = append(got, sp)
			}
		}
		return len(got) == n
	})
	return got
}

// TestTracerSpans: a request retried after a refused connect yields a
// request span with two attempt spans under it (retry numbers 0 and 1,
// the first failed, the second with the upstream's status); the upstream
// gets the second attempt's trace context instead of the client's; the
// access log carries the trace ID.
func TestTracerSpans(t *testing.T) {
	var seen sync.Map
	live := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store("traceparent", r.Header.Get("Traceparent"))
		w.WriteHeader(201)
	}))
	dead := &Peer{Addr: deadAddr(t)}
	rt := &recTracer{}
	var logBuf logtest.Buffer
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{dead, live}, Retries: 1})
	p := startProxy(t, app, Config{Tracer: rt, AccessLog: slog.New(slog.NewJSONHandler(&logBuf, nil))}, ListenerConfig{Name: "http"})
	req, _ := http.NewRequest("GET", "http://"+p.addr+"/x", nil)
	req.Header.Set("Traceparent", "client-ctx")
	resp, err := h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	spans := rt.waitSpans(t, 3)
	req0, a0, a1 := spans[0], spans[1], spans[2]
	if req0.kind != SpanRequest || req0.parent != 0 || req0.parentHeader != "client-ctx" || req0.end.Status != 201 || req0.end.Err != nil {
		t.Fatalf("request span %+v", req0)
	}
	if a0.kind != SpanAttempt || a0.parent != req0.id || a0.retries != 0 || a0.peer != dead.Addr || a0.end.Err == nil || a0.end.Status != 0 {
		t.Fatalf("first attempt span %+v", a0)
	}
	if a1.kind != SpanAttempt || a1.parent != req0.id || a1.retries != 1 || a1.peer != live.Addr || a1.end.Err != nil || a1.end.Status != 201 {
		t.Fatalf("second attempt span %+v", a1)
	}
	if got, _ := seen.Load("traceparent"); got != fmt.Sprintf("span-%d", a1.id) {
		t.Fatalf("upstream got traceparent %q, want the second attempt's", got)
	}
	waitFor(t, 5*time.Second, "access log line", func() bool { return strings.Contains(logBuf.String(), "trace_id") })
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(logBuf.String())), &line); err != nil || line["trace_id"] != "client-ctx" {
		t.Fatalf("access log %q: trace_id %v (%v)", logBuf.String(), line["trace_id"], err)
	}
}

// TestTracerCacheLookup: a cached route's lookup is a span under the
// request's, and the store is asked with the lookup span's context (so a
// cluster store's call to the key's owner joins the trace); the first
// lookup finds nothing, the second finds the stored response.
func TestTracerCacheLookup(t *testing.T) {
	rt := &recTracer{}
	peer := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("body"))
	}))
	mem, err := cache.NewMemory(cache.MemoryConfig{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	store := &ctxStore{Store: mem}
	app := routeWith(t, RouteConfig{Cache: &CacheConfig{}}, peer)
	p := startProxy(t, app, Config{Tracer: rt, CacheStore: store}, ListenerConfig{Name: "http"})
	for range 2 {
		if resp, body := mustGet(t, h1Client(), "http://"+p.addr+"/c"); resp.StatusCode != 200 || body != "body" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	spans := rt.waitSpans(t, 5) // request, lookup, attempt; request, lookup
	var lookups []recSpan
	for _, sp := range spans {
		if sp.kind == SpanCacheLookup {
			lookups = append(lookups, sp)
		}
	}
	if len(lookups) != 2 || lookups[0].end.Found || !lookups[1].end.Found {
		t.Fatalf("lookups %+v: want a miss then a hit", lookups)
	}
	all := rt.snapshot() // span id i is all[i-1]
	for _, l := range lookups {
		if l.parent == 0 || all[l.parent-1].kind != SpanRequest {
			t.Fatalf("lookup span %+v is not under a request span", l)
		}
		if !store.sawSpan(l.id) {
			t.Fatalf("the store was not asked with lookup span %d's context", l.id)
		}
	}
}

// TestNoTracerPassesTraceContext: without a Tracer the client's trace
// context goes to the upstream unchanged, as any end-to-end field.
func TestNoTracerPassesTraceContext(t *testing.T) {
	var got sync.Map
	peer := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store("tp", r.Header.Get("Traceparent"))
		got.Store("ts", r.Header.Get("Tracestate"))
	}))
	p := startProxy(t, routerFor(t, peer), Config{}, ListenerConfig{Name: "http"})
	req, _ := http.NewRequest("GET", "http://"+p.addr+"/", nil)
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req.Header.Set("Traceparent", tp)
	req.Header.Set("Tracestate", "k=v")
	resp, err := h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v, _ := got.Load("tp"); v != tp {
		t.Fatalf("traceparent %q", v)
	}
	if v, _ := got.Load("ts"); v != "k=v" {
		t.Fatalf("tracestate %q", v)
	}
}

// ctxStore records the span each Lookup was asked under.
type ctxStore struct {
	cache.Store
	mu    sync.Mutex
	spans []int
}

func (c *ctxStore) Lookup(ctx context.Context, key string) (cache.Object, error) {
	if sp, ok := ctx.Value(recSpanKey{}).(*recSpan); ok {
		c.mu.Lock()
		c.spans = append(c.spans, sp.id)
		c.mu.Unlock()
	}
	return c.Store.Lookup(ctx, key)
}

func (c *ctxStore) sawSpan(id int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if s == id {
			return true
		}
	}
	return false
}
