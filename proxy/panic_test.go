package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"

	"github.com/pingora-go/pingora-go/internal/logtest"
	"github.com/pingora-go/pingora-go/proxy/internal/hostile"
)

// panicApp routes with a RouterApp and panics in the phase a request's
// X-Panic field names: "request", "response", "body" (on the first body
// chunk, once the head went out) or "logging"; with X-Panic-Abort it
// panics with http.ErrAbortHandler. Logging records how each request
// ended before it panics.
type panicApp struct {
	RouterApp
	logAll atomic.Bool // Logging panics for every request, refused ones too

	mu   sync.Mutex
	ends []loggedEnd
}

type loggedEnd struct {
	path   string
	status int
	err    error
}

func (a *panicApp) RequestFilter(s *Session, c struct{}) (bool, error) {
	a.maybePanic(s, "request")
	return a.RouterApp.RequestFilter(s, c)
}

func (a *panicApp) ResponseFilter(s *Session, _ *ResponseHeader, _ struct{}) error {
	a.maybePanic(s, "response")
	return nil
}

func (a *panicApp) ResponseBodyFilter(s *Session, chunk []byte, _ bool, _ struct{}) ([]byte, error) {
	a.maybePanic(s, "body")
	return chunk, nil
}

func (a *panicApp) Logging(s *Session, _ struct{}, err error) {
	// Decide before recording the end: once a test sees the end
	// (waitEnded), a change to logAll no longer reaches this request.
	all := a.logAll.Load()
	a.mu.Lock()
	a.ends = append(a.ends, loggedEnd{path: s.Req.Path(), status: s.Status, err: err})
	a.mu.Unlock()
	if all {
		panic("logging broke")
	}
	a.maybePanic(s, "logging")
}

func (a *panicApp) maybePanic(s *Session, phase string) {
	if s.Req.Header.Get("X-Panic") != phase {
		return
	}
	if s.Req.Header.Get("X-Panic-Abort") != "" {
		panic(http.ErrAbortHandler)
	}
	var m map[string]int
	m[phase]++ // the bug a phase really has: a write to a nil map
}

// ended returns how the request for path ended, as Logging saw it.
func (a *panicApp) ended(path string) (loggedEnd, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.ends {
		if e.path == path {
			return e, true
		}
	}
	return loggedEnd{}, false
}

// syncBuffer is an error log shared by the proxy's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type panicEnv struct {
	app    *panicApp
	router *Router
	p      *testProxy[struct{}]
	log    *syncBuffer
	reg    *prometheus.Registry
}

// startPanicEnv runs a panicApp in front of an HTTP/1.1 origin serving
// h, whose peer has the connection limit conns.
func startPanicEnv(t *testing.T, h http.Handler, conns ConnLimit, opts ...func(*Config)) *panicEnv {
	t.Helper()
	peer := startOrigin(t, originH1, nil, h)
	peer.Conns = conns
	ra := routerFor(t, peer)
	e := &panicEnv{app: &panicApp{RouterApp: ra}, router: ra.Router, log: &syncBuffer{}, reg: prometheus.NewRegistry()}
	cfg := Config{ErrorLog: slog.New(slog.NewTextHandler(e.log, nil)), Metrics: e.reg}
	for _, o := range opts {
		o(&cfg)
	}
	e.p = startProxy(t, e.app, cfg, ListenerConfig{Name: "http", H2C: true})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("error log:\n%s", e.log.String())
		}
	})
	return e
}

func (e *panicEnv) panics() float64 { return counterValue(e.p.srv.metrics.panics) }

// waitPanics waits until n panics were counted.
func (e *panicEnv) waitPanics(t *testing.T, n float64) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%v panics counted", n), func() bool { return e.panics() == n })
}

// panicLines returns the error log's lines about panics.
func (e *panicEnv) panicLines() []string {
	var out []string
	for _, l := range strings.Split(e.log.String(), "\n") {
		if strings.Contains(l, "panic serving a request") {
			out = append(out, l)
		}
	}
	return out
}

// checkLogged checks that exactly one panic was logged, at error level,
// with the value and the stack of the phase that panicked.
func (e *panicEnv) checkLogged(t *testing.T, frame string) {
	t.Helper()
	lines := e.panicLines()
	if len(lines) != 1 {
		t.Fatalf("%d panic lines logged, want 1: %q", len(lines), lines)
	}
	l := lines[0]
	for _, want := range []string{"level=ERROR", "assignment to entry in nil map", "stack=", "(*panicApp).maybePanic", frame} {
		if !strings.Contains(l, want) {
			t.Fatalf("the panic's log line lacks %q: %s", want, l)
		}
	}
}

// inFlight is the peer's in-flight count (least-connections reads it).
func (e *panicEnv) inFlight() int64 { return e.router.Table().Upstreams()[0].Peers[0].InFlight }

// waitEnded waits for Logging to see the request for path end.
func (e *panicEnv) waitEnded(t *testing.T, path string) loggedEnd {
	t.Helper()
	var got loggedEnd
	waitFor(t, 10*time.Second, "Logging of "+path, func() bool {
		var ok bool
		got, ok = e.app.ended(path)
		return ok
	})
	return got
}

// h1Conn is a raw HTTP/1.1 client connection to the proxy.
type h1Conn struct {
	nc net.Conn
	br *bufio.Reader
}

func (e *panicEnv) dialH1(t *testing.T) *h1Conn {
	t.Helper()
	nc, err := net.Dial("tcp", e.p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &h1Conn{nc: nc, br: bufio.NewReader(nc)}
}

// do sends raw and reads the response; bodyErr is the body's read error.
func (c *h1Conn) do(t *testing.T, raw string) (resp *http.Response, body string, bodyErr error) {
	t.Helper()
	if _, err := io.WriteString(c.nc, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, bodyErr := io.ReadAll(resp.Body)
	return resp, string(b), bodyErr
}

// closed reports whether the proxy closed the connection (before its
// deadline).
func (c *h1Conn) closed() bool {
	_, err := c.br.ReadByte()
	return errors.Is(err, io.EOF)
}

func get(path string, fields ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: proxy.test\r\n" + strings.Join(fields, "") + "\r\n"
}

// TestPanicInRequestFilter: a RequestFilter that panics fails its request
// with a 500 and the HTTP/1.1 connection closes; the process goes on, the
// next request is served, the panic is counted once and logged once at
// error level with its stack, and Logging sees the request's 500 with an
// error wrapping ErrPanic. Before the recovery the test binary died.
func TestPanicInRequestFilter(t *testing.T) {
	e := startPanicEnv(t, echoHandler(), ConnLimit{})
	c := e.dialH1(t)
	resp, body, _ := c.do(t, get("/p", "X-Panic: request\r\n"))
	if resp.StatusCode != 500 || body != "500 Internal Server Error\n" || !resp.Close {
		t.Fatalf("got %d %q (close %v), want a 500 that closes the connection", resp.StatusCode, body, resp.Close)
	}
	if !c.closed() {
		t.Fatal("the connection stayed open after the panic")
	}
	if resp, body := mustGet(t, h1Client(), "http://"+e.p.addr+"/next"); resp.StatusCode != 200 || body != "GET /next " {
		t.Fatalf("the next request: %d %q", resp.StatusCode, body)
	}
	e.waitPanics(t, 1)
	e.checkLogged(t, "(*panicApp).RequestFilter")
	if got := e.waitEnded(t, "/p"); got.status != 500 || !errors.Is(got.err, ErrPanic) {
		t.Fatalf("Logging saw status %d, err %v; want 500 and ErrPanic", got.status, got.err)
	}
	if n := gatheredCounter(t, e.reg, "pingora_panics_total"); n != 1 {
		t.Fatalf("pingora_panics_total = %v, want 1", n)
	}
}

// gatheredCounter is the value of the counter name in reg.
func gatheredCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s not registered", name)
	return 0
}

// TestPanicFreesTheUpstream: a ResponseFilter that panics while the
// request body still streams upstream (the origin answered early) gets
// the client a 500 on a closing connection, and lets go of everything the
// attempt held: the body writer is stopped, the upstream connection and
// the peer's only connection slot (Max 1, no queue) are freed, and the
// peer's in-flight count is back to 0. A leaked slot would get the next
// request a 503.
func TestPanicFreesTheUpstream(t *testing.T) {
	e := startPanicEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "early") // without reading the body
	}), ConnLimit{Max: 1, Queue: -1})
	c := e.dialH1(t)
	head := "POST /p HTTP/1.1\r\nHost: proxy.test\r\nX-Panic: response\r\nContent-Length: 1000000\r\n\r\n"
	resp, body, _ := c.do(t, head+strings.Repeat("x", 10<<10))
	if resp.StatusCode != 500 || !resp.Close {
		t.Fatalf("got %d %q (close %v), want a 500 that closes the connection", resp.StatusCode, body, resp.Close)
	}
	if !c.closed() {
		t.Fatal("the connection stayed open after the panic")
	}
	waitFor(t, 10*time.Second, "the peer's in-flight count back to 0", func() bool { return e.inFlight() == 0 })
	for i := range 3 {
		if resp, body := mustGet(t, h1Client(), "http://"+e.p.addr+"/next"); resp.StatusCode != 200 || body != "early" {
			t.Fatalf("request %d after the panic: %d %q (a leaked connection slot answers 503)", i, resp.StatusCode, body)
		}
	}
	e.waitPanics(t, 1)
	e.checkLogged(t, "(*panicApp).ResponseFilter")
}

// TestPanicEndsTheSpans: a request whose ResponseFilter panicked still
// ends its attempt span and its request span (500), with an error
// wrapping ErrPanic, and has its access log record.
func TestPanicEndsTheSpans(t *testing.T) {
	rt := &recTracer{}
	var access logtest.Buffer
	e := startPanicEnv(t, echoHandler(), ConnLimit{}, func(c *Config) {
		c.Tracer, c.AccessLog = rt, slog.New(slog.NewJSONHandler(&access, nil))
	})
	if resp, _, _ := e.dialH1(t).do(t, get("/p", "X-Panic: response\r\n")); resp.StatusCode != 500 {
		t.Fatalf("got %d, want 500", resp.StatusCode)
	}
	spans := rt.waitSpans(t, 2)
	for _, sp := range spans {
		if !errors.Is(sp.end.Err, ErrPanic) {
			t.Fatalf("span %v ended with %v, want ErrPanic", sp.kind, sp.end.Err)
		}
		if sp.kind == SpanRequest && sp.end.Status != 500 {
			t.Fatalf("the request span ended with status %d, want 500", sp.end.Status)
		}
	}
	waitFor(t, 10*time.Second, "the access log record", func() bool {
		return strings.Contains(access.String(), `"status":500`) && strings.Contains(access.String(), "proxy: panic: assignment to entry in nil map")
	})
}

// TestPanicInBodyFilterCutsH1: a body filter that panics after the head
// went out cuts the response (the client reads a short body, then the
// end of the connection); the next request is served.
func TestPanicInBodyFilterCutsH1(t *testing.T) {
	e := startPanicEnv(t, echoHandler(), ConnLimit{Max: 1, Queue: -1})
	c := e.dialH1(t)
	resp, body, bodyErr := c.do(t, get("/p", "X-Panic: body\r\n"))
	if resp.StatusCode != 200 || !errors.Is(bodyErr, io.ErrUnexpectedEOF) || body != "" {
		t.Fatalf("got %d %q, body error %v; want the head and a cut body", resp.StatusCode, body, bodyErr)
	}
	if !c.closed() {
		t.Fatal("the connection stayed open after the panic")
	}
	if resp, body := mustGet(t, h1Client(), "http://"+e.p.addr+"/next"); resp.StatusCode != 200 || body != "GET /next " {
		t.Fatalf("the next request: %d %q", resp.StatusCode, body)
	}
	e.waitPanics(t, 1)
	e.checkLogged(t, "(*panicApp).ResponseBodyFilter")
	waitFor(t, 10*time.Second, "the peer's in-flight count back to 0", func() bool { return e.inFlight() == 0 })
}

// TestPanicInBodyFilterResetsH2Stream: over HTTP/2 the stream whose body
// filter panicked is reset, and another stream of the same connection,
// under way meanwhile, completes; the peer's in-flight count is released
// (the h2 server's own recover kept the process up before, but leaked
// it). A panic before the head gets its stream a 500.
func TestPanicInBodyFilterResetsH2Stream(t *testing.T) {
	gate := make(chan struct{})
	e := startPanicEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-gate
		}
		io.WriteString(w, "done "+r.URL.Path)
	}), ConnLimit{})
	nc, err := net.Dial("tcp", e.p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := hostile.NewH2Conn(nc, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req := func(path string, extra ...string) []hostile.Field {
		return hostile.Fields(append([]string{":method", "GET", ":scheme", "http", ":path", path, ":authority", "proxy.test"}, extra...)...)
	}
	slow, err := c.Send(req("/slow"), false)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the slow stream at the origin", func() bool { return e.inFlight() == 1 })
	bad, err := c.Send(req("/p", "x-panic", "body"), false)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := c.Await(bad); err != nil || !o.Reset || o.Code != http2.ErrCodeInternal {
		t.Fatalf("the panicking stream ended with %v (err %v), want RST_STREAM INTERNAL_ERROR", o, err)
	}
	close(gate)
	if o, err := c.Await(slow); err != nil || o.Status != "200" || o.Body != "done /slow" {
		t.Fatalf("the other stream ended with %v (err %v), want 200 \"done /slow\"", o, err)
	}
	waitFor(t, 10*time.Second, "the peer's in-flight count back to 0", func() bool { return e.inFlight() == 0 })
	e.waitPanics(t, 1)
	e.checkLogged(t, "(*panicApp).ResponseBodyFilter")

	// Before the head, the stream gets a 500, and the connection goes on.
	early, _ := c.Send(req("/early", "x-panic", "response"), false)
	if o, err := c.Await(early); err != nil || o.Status != "500" || o.Body != "500 Internal Server Error\n" {
		t.Fatalf("a stream whose ResponseFilter panicked ended with %v (err %v), want 500", o, err)
	}
	next, _ := c.Send(req("/next"), false)
	if o, err := c.Await(next); err != nil || o.Status != "200" || o.Body != "done /next" {
		t.Fatalf("the next stream ended with %v (err %v), want 200", o, err)
	}
	e.waitPanics(t, 2)
}

// TestPanicInLogging: a Logging phase that panics runs after the response
// went out whole: the client has it, the connection carries the next
// request, and the panic is counted and logged. A request refused before
// the phases (a malformed head) runs Logging too, and survives it.
func TestPanicInLogging(t *testing.T) {
	e := startPanicEnv(t, echoHandler(), ConnLimit{})
	c := e.dialH1(t)
	resp, body, err := c.do(t, get("/p", "X-Panic: logging\r\n"))
	if resp.StatusCode != 200 || body != "GET /p " || err != nil {
		t.Fatalf("got %d %q (%v), want the whole response", resp.StatusCode, body, err)
	}
	e.waitPanics(t, 1)
	e.checkLogged(t, "(*panicApp).Logging")
	resp, body, err = c.do(t, get("/again"))
	if resp.StatusCode != 200 || body != "GET /again " || err != nil {
		t.Fatalf("the next request on the connection: %d %q (%v)", resp.StatusCode, body, err)
	}
	// Logging runs after the response went out: let /again's end first,
	// or it panics too once every request's Logging does.
	e.waitEnded(t, "/again")

	e.app.logAll.Store(true)
	c = e.dialH1(t)
	if resp, _, _ := c.do(t, "GET / HTTP/1.1\r\nHost: proxy.test\r\nBad Field: x\r\n\r\n"); resp.StatusCode != 400 {
		t.Fatalf("the malformed request got %d, want 400", resp.StatusCode)
	}
	e.waitPanics(t, 2)
	e.app.logAll.Store(false)
	if resp, body := mustGet(t, h1Client(), "http://"+e.p.addr+"/next"); resp.StatusCode != 200 || body != "GET /next " {
		t.Fatalf("the next request: %d %q", resp.StatusCode, body)
	}
}

// TestPanicAbortHandler: a phase that panics with http.ErrAbortHandler
// aborts its request quietly, as in net/http: no answer (the HTTP/1.1
// connection closes, the HTTP/2 stream is reset while the connection
// goes on), nothing logged, nothing counted; Logging sees the abort.
func TestPanicAbortHandler(t *testing.T) {
	e := startPanicEnv(t, echoHandler(), ConnLimit{})
	c := e.dialH1(t)
	io.WriteString(c.nc, get("/p", "X-Panic: request\r\n", "X-Panic-Abort: 1\r\n"))
	if _, err := http.ReadResponse(c.br, nil); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading the aborted response: %v, want the connection closed (EOF)", err)
	}
	if got := e.waitEnded(t, "/p"); !errors.Is(got.err, http.ErrAbortHandler) {
		t.Fatalf("Logging saw err %v, want http.ErrAbortHandler", got.err)
	}

	nc, err := net.Dial("tcp", e.p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	h2, err := hostile.NewH2Conn(nc, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req := func(path string, extra ...string) []hostile.Field {
		return hostile.Fields(append([]string{":method", "GET", ":scheme", "http", ":path", path, ":authority", "proxy.test"}, extra...)...)
	}
	id, _ := h2.Send(req("/h2", "x-panic", "request", "x-panic-abort", "1"), false)
	if o, err := h2.Await(id); err != nil || !o.Reset {
		t.Fatalf("the aborted stream ended with %v (err %v), want RST_STREAM", o, err)
	}
	id, _ = h2.Send(req("/ok"), false)
	if o, err := h2.Await(id); err != nil || o.Status != "200" || o.Body != "GET /ok " {
		t.Fatalf("the next stream ended with %v (err %v), want 200", o, err)
	}
	e.waitEnded(t, "/ok")
	if n, lines := e.panics(), e.panicLines(); n != 0 || len(lines) != 0 {
		t.Fatalf("an abort was counted (%v) or logged: %q", n, lines)
	}
}

// bgPanicApp is a RouterApp whose UpstreamResponseFilter panics in the
// cache's background requests while on is set.
type bgPanicApp struct {
	RouterApp
	on *atomic.Bool
}

func (a bgPanicApp) UpstreamResponseFilter(s *Session, _ *ResponseHeader, _ struct{}) error {
	if s.Background && a.on.Load() {
		var m map[string]int
		m["refresh"]++
	}
	return nil
}

// TestPanicInBackgroundRefresh: a phase that panics in a background
// revalidation (stale-while-revalidate, on a goroutine of its own) fails
// that revalidation only: its fill lock is given up, so the next stale
// hit starts another, and one that does not panic stores the new
// response.
func TestPanicInBackgroundRefresh(t *testing.T) {
	on := new(atomic.Bool)
	on.Store(true)
	s := startCacheSetupApp(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=600")
		fmt.Fprintf(w, "v%d", n)
	}, func(ra RouterApp) App[struct{}] { return bgPanicApp{RouterApp: ra, on: on} }, ListenerConfig{Name: "http"})
	panics := func() float64 { return counterValue(s.srv.metrics.panics) }
	c := h1Client()
	s.do(t, c, "GET", "/r", nil)
	s.fc.Advance(20 * time.Second)
	// Each stale hit starts a refresh when no other holds the key's lock:
	// a second panic means the first one's lock was given up.
	waitFor(t, 10*time.Second, "two refreshes panicking", func() bool {
		if panics() >= 2 {
			return true
		}
		if _, b := s.do(t, c, "GET", "/r", nil); b != "v1" {
			t.Fatalf("a stale hit got %q, want v1", b)
		}
		return false
	})
	on.Store(false)
	waitFor(t, 10*time.Second, "a refreshed response stored", func() bool {
		resp, b := s.do(t, c, "GET", "/r", nil)
		return b != "v1" && strings.HasPrefix(cacheStatusOf(resp), "hit")
	})
}
