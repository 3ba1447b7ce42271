package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/internal/logtest"
	"github.com/pingora-go/pingora-go/proxy/cache"
)

// getAll runs n concurrent GETs of path and returns their bodies, statuses
// and Cache-Status values; a transport error is returned as the body
// "error: ...".
func getAll(t *testing.T, s *cacheSetup, n int, path string) (bodies []string, codes []int, statuses []string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxConnsPerHost: 0}, Timeout: 30 * time.Second}
	bodies, codes, statuses = make([]string, n), make([]int, n), make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get("http://" + s.addr + path)
			if err != nil {
				bodies[i] = "error: " + err.Error()
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				bodies[i] = "error: " + err.Error()
				return
			}
			bodies[i], codes[i], statuses[i] = string(b), resp.StatusCode, cacheStatusOf(resp)
		}()
	}
	wg.Wait()
	return bodies, codes, statuses
}

// gate is an origin's brake: requests block in wait until open.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) open()                      { g.once.Do(func() { close(g.ch) }) }
func (g *gate) wait(r *http.Request) error { return waitOn(g.ch, r) }

func waitOn(ch chan struct{}, r *http.Request) error {
	select {
	case <-ch:
		return nil
	case <-r.Context().Done():
		return r.Context().Err()
	}
}

// TestCacheLockCollapses: 50 concurrent misses on one key send exactly one
// request to the origin, and every client gets the identical full body.
// The origin holds its head until every other request waits on the lock.
func TestCacheLockCollapses(t *testing.T) {
	body := strings.Repeat("collapsed forwarding ", 5000)
	g := newGate()
	s := startCacheSetup(t, &CacheConfig{LockTimeout: time.Minute}, func(n int64, w http.ResponseWriter, r *http.Request) {
		g.wait(r)
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, body)
	})
	const n = 50
	done := make(chan struct{})
	var bodies, statuses []string
	var codes []int
	go func() {
		defer close(done)
		bodies, codes, statuses = getAll(t, s, n, "/hot")
	}()
	waitFor(t, 10*time.Second, "one origin request and the rest waiting on the lock", func() bool {
		return s.origin.n.Load() == 1 && s.locks.waiting.Load() == n-1
	})
	g.open()
	<-done
	collapsed := 0
	for i := range n {
		if codes[i] != 200 || bodies[i] != body {
			t.Fatalf("client %d: %d, %d bytes (%q)", i, codes[i], len(bodies[i]), truncate(bodies[i]))
		}
		if strings.Contains(statuses[i], "collapsed") || strings.HasPrefix(statuses[i], "hit") {
			collapsed++
		}
	}
	if got := s.origin.n.Load(); got != 1 {
		t.Fatalf("origin saw %d requests, want 1", got)
	}
	if collapsed != n-1 || !strings.Contains(strings.Join(statuses, "|"), "collapsed") {
		t.Fatalf("%d of %d clients were served from the one fill: %q", collapsed, n-1, statuses)
	}
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// TestCacheLockTimeout: a request that waits on a fill longer than
// LockTimeout goes to the origin itself, uncached; the first fill still
// stores its response.
func TestCacheLockTimeout(t *testing.T) {
	g := newGate()
	s := startCacheSetup(t, &CacheConfig{LockTimeout: 50 * time.Millisecond}, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			g.wait(r)
		}
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "v%d", n)
	})
	defer g.open()
	c := h1Client()
	first := make(chan string, 1) // the first client's body
	go func() { _, b := s.do(t, c, "GET", "/k", nil); first <- b }()
	waitFor(t, 10*time.Second, "the first request at the origin", func() bool { return s.origin.n.Load() == 1 })
	resp, b := s.do(t, h1Client(), "GET", "/k", nil)
	if b != "v2" || !strings.Contains(cacheStatusOf(resp), "detail=lock-timeout") || strings.Contains(cacheStatusOf(resp), "stored") {
		t.Fatalf("after the lock timeout: %q, Cache-Status %q", b, cacheStatusOf(resp))
	}
	g.open()
	if b := <-first; b != "v1" {
		t.Fatalf("first client got %q", b)
	}
	if resp, b := s.do(t, c, "GET", "/k", nil); b != "v1" || !strings.HasPrefix(cacheStatusOf(resp), "hit") {
		t.Fatalf("then: %q %q", b, cacheStatusOf(resp))
	}
}

// TestCacheFillFailsBeforeHead: a fill whose origin answers something not
// storable (here a 503) wakes its waiters, and each goes to the origin
// itself (the documented policy): nobody waits for the lock timeout, and
// nothing is stored.
func TestCacheFillFailsBeforeHead(t *testing.T) {
	g := newGate()
	s := startCacheSetup(t, &CacheConfig{LockTimeout: time.Minute}, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			g.wait(r)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "fresh")
	})
	done := make(chan struct{})
	var bodies, statuses []string
	var codes []int
	go func() {
		defer close(done)
		bodies, codes, statuses = getAll(t, s, 5, "/f")
	}()
	waitFor(t, 10*time.Second, "the first request at the origin", func() bool { return s.origin.n.Load() == 1 })
	waitFor(t, 10*time.Second, "the others waiting on the lock", func() bool { return s.locks.waiting.Load() == 4 })
	g.open()
	<-done
	fails, fresh := 0, 0
	for i := range 5 {
		switch {
		case codes[i] == 503:
			fails++
		case codes[i] == 200 && bodies[i] == "fresh" && strings.Contains(statuses[i], "detail=fill-failed"):
			fresh++
		default:
			t.Fatalf("client %d: %d %q %q", i, codes[i], bodies[i], statuses[i])
		}
	}
	if fails != 1 || fresh != 4 || s.origin.n.Load() != 5 {
		t.Fatalf("%d failed, %d went to the origin themselves, origin saw %d", fails, fresh, s.origin.n.Load())
	}
}

// rawOrigin lets the test drive the response: each connection gets
// whatever arrives on parts (the head first), and is closed when parts
// closes.
func rawOrigin(t *testing.T, parts chan []byte) (addr string, conns func() int) {
	var mu sync.Mutex
	n := 0
	addr = rawPeer(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		mu.Lock()
		n++
		mu.Unlock()
		for p := range parts {
			if _, err := c.Write(p); err != nil {
				return
			}
		}
	})
	return addr, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// startRawCache starts a proxy caching with cc in front of addr, and
// returns its address and the lock waits under way.
func startRawCache(t *testing.T, cc *CacheConfig, addr string) (string, *lockCounter) {
	t.Helper()
	store, err := cache.NewMemory(cache.MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	locks := &lockCounter{Store: store}
	p := startProxy(t, routeWith(t, RouteConfig{Cache: cc}, &Peer{Addr: addr}), Config{CacheStore: locks}, ListenerConfig{Name: "http", H2C: true})
	return p.addr, locks
}

// collapse starts a filler and a second request that waits on its lock,
// then sends wire (a head and the first body bytes) from the origin; both
// clients must get first, the body bytes, before the fill completes.
func collapse(t *testing.T, proxy, path string, locks *lockCounter, conns func() int, parts chan []byte, wire, first string) (*streamed, *streamed) {
	t.Helper()
	filler := streamGet(t, "http://"+proxy+path)
	waitFor(t, 10*time.Second, "the fill at the origin", func() bool { return conns() == 1 })
	waiter := streamGet(t, "http://"+proxy+path)
	waitFor(t, 10*time.Second, "the second request waiting on the lock", func() bool { return locks.waiting.Load() == 1 })
	parts <- []byte(wire)
	for name, s := range map[string]*streamed{"filler": filler, "waiter": waiter} {
		if got := s.next(t, len(first)); got != first {
			t.Fatalf("%s's client got %q before the fill completed", name, got)
		}
	}
	return filler, waiter
}

// TestCacheWaiterStreams: a request waiting on the lock receives the
// body's first bytes before the fill completes, then the rest.
func TestCacheWaiterStreams(t *testing.T) {
	parts := make(chan []byte, 4) // the test's response pieces
	addr, conns := rawOrigin(t, parts)
	proxy, locks := startRawCache(t, &CacheConfig{LockTimeout: time.Minute}, addr)
	first, second := collapse(t, proxy, "/s", locks, conns, parts, "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 10\r\n\r\n01234", "01234")
	parts <- []byte("56789")
	close(parts)
	if a, b := first.rest(t), second.rest(t); a != "56789" || b != "56789" {
		t.Fatalf("rest: %q, %q", a, b)
	}
	if !strings.Contains(second.status, "collapsed") || conns() != 1 {
		t.Fatalf("second: Cache-Status %q, origin connections %d", second.status, conns())
	}
}

// streamed is a response read piece by piece; its head is awaited on the
// first read (the proxy sends a head with the first body bytes).
type streamed struct {
	ch     chan streamResult
	resp   *http.Response
	status string
}

type streamResult struct {
	resp *http.Response
	err  error
}

func streamGet(t *testing.T, url string) *streamed {
	t.Helper()
	s := &streamed{ch: make(chan streamResult, 1)} // the response head
	go func() {
		resp, err := h1Client().Get(url)
		s.ch <- streamResult{resp, err}
	}()
	return s
}

func (s *streamed) head(t *testing.T) {
	t.Helper()
	if s.resp != nil {
		return
	}
	select {
	case r := <-s.ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.resp.Body.Close() })
		s.resp, s.status = r.resp, cacheStatusOf(r.resp)
	case <-time.After(10 * time.Second):
		t.Fatal("no response head")
	}
}

func (s *streamed) next(t *testing.T, n int) string {
	t.Helper()
	s.head(t)
	b := make([]byte, n)
	if _, err := io.ReadFull(s.resp.Body, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return string(b)
}

func (s *streamed) rest(t *testing.T) string {
	t.Helper()
	s.head(t)
	b, err := io.ReadAll(s.resp.Body)
	if err != nil {
		t.Fatalf("rest: %v", err)
	}
	return string(b)
}

// TestCacheUpstreamDiesMidBody: an origin that closes mid-body gives the
// filler's client and the collapsed client a broken response (never a
// short one presented as complete), and nothing is stored.
func TestCacheUpstreamDiesMidBody(t *testing.T) {
	parts := make(chan []byte, 4) // the test's response pieces
	addr, conns := rawOrigin(t, parts)
	proxy, locks := startRawCache(t, &CacheConfig{LockTimeout: time.Minute}, addr)
	first, second := collapse(t, proxy, "/d", locks, conns, parts, "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("x", 40), strings.Repeat("x", 40))
	close(parts) // the origin closes the connection 60 bytes short
	for name, s := range map[string]*streamed{"filler": first, "collapsed": second} {
		if _, err := io.ReadAll(s.resp.Body); err == nil {
			t.Fatalf("%s client read a short body as complete", name)
		}
	}
	// Nothing was stored: the next request goes to the origin.
	again := make(chan struct{})
	go func() {
		defer close(again)
		resp, err := h1Client().Get("http://" + proxy + "/d")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	waitFor(t, 10*time.Second, "a new origin request", func() bool { return conns() >= 2 })
	<-again
}

// TestCacheTooLargeMidBody: a body without Content-Length that grows past
// max_object_bytes streams whole to the filler's client and to the client
// collapsed onto it, and is not stored.
func TestCacheTooLargeMidBody(t *testing.T) {
	parts := make(chan []byte, 8) // the test's response pieces
	addr, conns := rawOrigin(t, parts)
	proxy, locks := startRawCache(t, &CacheConfig{LockTimeout: time.Minute, MaxObjectBytes: 1000}, addr)
	chunk := func(s string) []byte { return []byte(fmt.Sprintf("%x\r\n%s\r\n", len(s), s)) }
	a := strings.Repeat("a", 600)
	first, second := collapse(t, proxy, "/big", locks, conns, parts, "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n"+string(chunk(a)), a)
	parts <- chunk(strings.Repeat("b", 600)) // past the limit now
	parts <- chunk(strings.Repeat("c", 600))
	parts <- []byte("0\r\n\r\n")
	close(parts)
	want := strings.Repeat("b", 600) + strings.Repeat("c", 600)
	if a, b := first.rest(t), second.rest(t); a != want || b != want {
		t.Fatalf("rest: %d and %d bytes", len(a), len(b))
	}
	again := make(chan struct{})
	go func() {
		defer close(again)
		if resp, err := h1Client().Get("http://" + proxy + "/big"); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, 10*time.Second, "a new origin request (nothing stored)", func() bool { return conns() >= 2 })
	<-again
}

// TestCacheFillOutlivesItsClient: the filler's client leaves mid-body; the
// fill goes on for the request collapsed onto it, and is stored.
func TestCacheFillOutlivesItsClient(t *testing.T) {
	parts := make(chan []byte, 4) // the test's response pieces
	addr, conns := rawOrigin(t, parts)
	proxy, locks := startRawCache(t, &CacheConfig{LockTimeout: time.Minute}, addr)
	first, second := collapse(t, proxy, "/o", locks, conns, parts, "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 10\r\n\r\n01234", "01234")
	first.resp.Body.Close() // the filler's client is gone
	parts <- []byte("56789")
	close(parts)
	if b := second.rest(t); b != "56789" {
		t.Fatalf("collapsed client: %q", b)
	}
	waitFor(t, 10*time.Second, "the object stored", func() bool {
		resp, err := h1Client().Get("http://" + proxy + "/o")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b) == "0123456789" && strings.HasPrefix(cacheStatusOf(resp), "hit")
	})
	if conns() != 1 {
		t.Fatalf("origin connections %d, want 1", conns())
	}
}

// logStatus is a RouterApp that hands every request's Session.CacheStatus
// to the test at the Logging phase.
type logStatus struct {
	RouterApp
	logged chan string
}

func (a *logStatus) Logging(s *Session, _ struct{}, _ error) { a.logged <- s.CacheStatus }

// TestCacheTooLargeMidBodyLogged: a body without Content-Length sends its
// Cache-Status before its size is known; once it outgrows the limit and
// streams through uncached, what the request logs (Session.CacheStatus)
// no longer says stored, but too_large.
func TestCacheTooLargeMidBodyLogged(t *testing.T) {
	var app *logStatus
	s := startCacheSetupApp(t, &CacheConfig{MaxObjectBytes: 1000}, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		for _, c := range []string{"a", "b", "c"} {
			io.WriteString(w, strings.Repeat(c, 600))
			w.(http.Flusher).Flush() // chunked: no Content-Length
		}
	}, func(ra RouterApp) App[struct{}] {
		app = &logStatus{RouterApp: ra, logged: make(chan string, 4)}
		return app
	}, ListenerConfig{Name: "http"})
	resp, body := s.do(t, h1Client(), http.MethodGet, "/big", nil)
	if len(body) != 1800 || resp.ContentLength != -1 {
		t.Fatalf("body %d bytes, Content-Length %d", len(body), resp.ContentLength)
	}
	select {
	case got := <-app.logged:
		if strings.Contains(got, "stored") || !strings.Contains(got, "detail=too_large") {
			t.Fatalf("logged Cache-Status %q, want too_large and not stored", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request was not logged")
	}
	// The URL is marked (hit-for-pass), for this reason: the next
	// request does not claim to store it again.
	for range 2 {
		if resp, _ := s.do(t, h1Client(), http.MethodGet, "/big", nil); cacheStatusOf(resp) != "fwd=miss; fwd-status=200; detail=hit-for-pass" {
			t.Fatalf("next request: Cache-Status %q", cacheStatusOf(resp))
		}
		<-app.logged
	}
}

// TestCacheStatusInAccessLog: the access log records what the cache did
// (as nginx logs $upstream_cache_status), as the request ended: a body
// that outgrew the limit after its head went out is logged too_large.
func TestCacheStatusInAccessLog(t *testing.T) {
	o := &cacheOrigin{fc: newCacheClock(), handle: func(_ int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.URL.Path == "/big" {
			for range 3 {
				io.WriteString(w, strings.Repeat("x", 600))
				w.(http.Flusher).Flush()
			}
			return
		}
		io.WriteString(w, "small")
	}}
	peer := startOrigin(t, originH1, nil, o)
	var logged logtest.Buffer
	p := startProxy(t, routeWith(t, RouteConfig{Cache: &CacheConfig{MaxObjectBytes: 1000}}, peer),
		Config{Clock: o.fc, AccessLog: slog.New(slog.NewJSONHandler(&logged, nil))}, ListenerConfig{Name: "http"})
	for i, path := range []string{"/s", "/s", "/big"} {
		resp, err := h1Client().Get("http://" + p.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// The record follows the response: wait for it, to keep the order.
		waitFor(t, 5*time.Second, "the access log record", func() bool { return len(logged.Lines()) > i })
	}
	want := []string{"fwd=miss; fwd-status=200; stored", "hit; ttl=60", "fwd=miss; fwd-status=200; detail=too_large"}
	for i, line := range logged.Lines()[:3] {
		var rec struct {
			CacheStatus string `json:"cache_status"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.CacheStatus != want[i] {
			t.Errorf("access log line %d: cache_status %q, want %q (%s)", i, rec.CacheStatus, want[i], line)
		}
	}
}
