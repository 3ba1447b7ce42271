package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// scriptLimiter answers Limit from a list of decisions, the last one
// repeating, and records what it was asked.
type scriptLimiter struct {
	mu     sync.Mutex
	script []LimitDecision
	calls  []LimitDecision // prev of each call (zero for nil)
	routes []string
}

func (l *scriptLimiter) Limit(s *Session, prev *LimitDecision) LimitDecision {
	l.mu.Lock()
	defer l.mu.Unlock()
	var p LimitDecision
	if prev != nil {
		p = *prev
	}
	l.calls = append(l.calls, p)
	l.routes = append(l.routes, s.Route)
	d := l.script[0]
	if len(l.script) > 1 {
		l.script = l.script[1:]
	}
	return d
}

var _ Limiter = (*scriptLimiter)(nil)

// countingOrigin counts the requests it serves.
func countingOrigin(t *testing.T, n *atomic.Int64) *Peer {
	return startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.WriteString(w, "origin")
	}))
}

// TestLimiterRejects: a refusal is a 429 with Retry-After and the
// RateLimit fields, decided after routing and before the upstream is
// contacted.
func TestLimiterRejects(t *testing.T) {
	var hits atomic.Int64
	l := &scriptLimiter{script: []LimitDecision{{Deny: true, RetryAfter: 1500 * time.Millisecond,
		Policy: `"api";q=10;w=1`, State: `"api";r=0;t=1`}}}
	p := startProxy(t, routeWith(t, RouteConfig{Name: "api"}, countingOrigin(t, &hits)), Config{Limiter: l}, ListenerConfig{Name: "http"})
	resp, body := mustGet(t, h1Client(), "http://"+p.addr+"/x")
	if resp.StatusCode != http.StatusTooManyRequests || body != "429 Too Many Requests\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	for k, want := range map[string]string{"Retry-After": "2", "Ratelimit-Policy": `"api";q=10;w=1`, "Ratelimit": `"api";r=0;t=1`} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if hits.Load() != 0 {
		t.Fatal("the upstream was contacted for a refused request")
	}
	if l.routes[0] != "api" {
		t.Fatalf("Limit saw route %q, want the routed %q", l.routes[0], "api")
	}
}

// TestLimiterFieldsOnAdmitted: an admitted request's response carries the
// fields the limiter returned; a request with none carries none.
func TestLimiterFieldsOnAdmitted(t *testing.T) {
	var hits atomic.Int64
	l := &scriptLimiter{script: []LimitDecision{{Policy: `"api";q=10;w=1`, State: `"api";r=9;t=1`}, {}}}
	p := startProxy(t, routerFor(t, countingOrigin(t, &hits)), Config{Limiter: l}, ListenerConfig{Name: "http"})
	resp, body := mustGet(t, h1Client(), "http://"+p.addr+"/")
	if resp.StatusCode != 200 || body != "origin" || resp.Header.Get("Ratelimit") != `"api";r=9;t=1` || resp.Header.Get("Ratelimit-Policy") != `"api";q=10;w=1` {
		t.Fatalf("first: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, _ = mustGet(t, h1Client(), "http://"+p.addr+"/")
	if resp.Header.Get("Ratelimit") != "" || resp.Header.Get("Ratelimit-Policy") != "" {
		t.Fatalf("second response kept the first one's fields: %v", resp.Header)
	}
}

// TestLimiterGRPC: a refused gRPC call gets a trailers-only
// RESOURCE_EXHAUSTED with the fields.
func TestLimiterGRPC(t *testing.T) {
	l := &scriptLimiter{script: []LimitDecision{{Deny: true, RetryAfter: time.Second, Policy: `"g";q=1;w=1`, State: `"g";r=0;t=1`}}}
	svc := newGRPCService()
	p := startProxy(t, routerFor(t, startGRPCOrigin(t, svc, nil)), Config{Limiter: l}, ListenerConfig{Name: "h2c", H2C: true})
	resp, body := rawGRPC(t, p.addr, "/grpc.testing.TestService/EmptyCall", nil)
	checkTrailersOnly(t, resp, body, codes.ResourceExhausted)
	if resp.Header.Get("Ratelimit") != `"g";r=0;t=1` || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("fields: %v", resp.Header)
	}
	select {
	case <-svc.seen:
		t.Fatal("the gRPC origin was called")
	default:
	}
}

// TestLimiterWait: a decision to wait holds the request, then asks again
// with the time waited and the limiter's bookmark; the second answer
// admits it.
func TestLimiterWait(t *testing.T) {
	var hits atomic.Int64
	l := &scriptLimiter{script: []LimitDecision{{Deny: true, Wait: 30 * time.Millisecond, Resume: 3}, {}}}
	p := startProxy(t, routerFor(t, countingOrigin(t, &hits)), Config{Limiter: l}, ListenerConfig{Name: "http"})
	start := time.Now()
	resp, _ := mustGet(t, h1Client(), "http://"+p.addr+"/")
	if resp.StatusCode != 200 || hits.Load() != 1 {
		t.Fatalf("status %d, %d upstream hits", resp.StatusCode, hits.Load())
	}
	if len(l.calls) != 2 || l.calls[1].Resume != 3 || l.calls[1].Waited != 30*time.Millisecond {
		t.Fatalf("calls: %+v", l.calls)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Fatal("the request was not held")
	}
}

// TestLimiterWaitClientGone: a client that leaves during a wait ends it;
// the upstream is never contacted.
func TestLimiterWaitClientGone(t *testing.T) {
	var hits atomic.Int64
	l := &scriptLimiter{script: []LimitDecision{{Deny: true, Wait: time.Hour}}}
	p := startProxy(t, routerFor(t, countingOrigin(t, &hits)), Config{Limiter: l}, ListenerConfig{Name: "http"})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/", nil)
	if _, err := h1Client().Do(req); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err = %v, want the client's deadline", err)
	}
	waitFor(t, 5*time.Second, "the held request to end", func() bool { return p.srv.ActiveConns() == 0 })
	if hits.Load() != 0 {
		t.Fatal("the upstream was contacted")
	}
}

// switchLimiter is a scriptLimiter that can say it has nothing to decide.
type switchLimiter struct {
	scriptLimiter
	active atomic.Bool
}

func (l *switchLimiter) Active() bool { return l.active.Load() }

// TestLimiterSpanAndInactive: an inactive limiter (no rules) is skipped,
// with no span; an active one's decision is a "rate limit" span under the
// request's, ending with the status a refusal answers.
func TestLimiterSpanAndInactive(t *testing.T) {
	var hits atomic.Int64
	l := &switchLimiter{scriptLimiter: scriptLimiter{script: []LimitDecision{{Deny: true, RetryAfter: time.Second}}}}
	tr := &recTracer{}
	p := startProxy(t, routerFor(t, countingOrigin(t, &hits)), Config{Limiter: l, Tracer: tr}, ListenerConfig{Name: "http"})
	if resp, _ := mustGet(t, h1Client(), "http://"+p.addr+"/"); resp.StatusCode != 200 || len(l.calls) != 0 {
		t.Fatalf("inactive limiter: status %d, %d calls", resp.StatusCode, len(l.calls))
	}
	l.active.Store(true)
	if resp, _ := mustGet(t, h1Client(), "http://"+p.addr+"/"); resp.StatusCode != 429 {
		t.Fatalf("active limiter: status %d", resp.StatusCode)
	}
	// The spans end after the client has its answer: wait for all four
	// (two requests, the first one's upstream attempt, the limit).
	var limits []recSpan
	var reqs []recSpan
	for _, sp := range tr.waitSpans(t, 4) {
		switch sp.kind {
		case SpanRateLimit:
			limits = append(limits, sp)
		case SpanRequest:
			reqs = append(reqs, sp)
		}
	}
	if len(limits) != 1 || len(reqs) != 2 || limits[0].parent != reqs[1].id || !limits[0].ended || limits[0].end.Status != 429 {
		t.Fatalf("rate limit spans %+v, request spans %+v", limits, reqs)
	}
}
