package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// TestCacheStaleWhileRevalidate: within the window a stale response is
// served at once and exactly one background request refreshes it, however
// many requests see it stale (RFC 5861 §3).
func TestCacheStaleWhileRevalidate(t *testing.T) {
	g := newGate()
	s := startCacheSetup(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 2 {
			g.wait(r) // the refresh stays under way while clients come
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		fmt.Fprintf(w, "v%d", n)
	})
	c := h1Client()
	s.do(t, c, "GET", "/w", nil)
	s.fc.Advance(20 * time.Second)
	for i := range 5 {
		resp, b := s.do(t, c, "GET", "/w", nil)
		if b != "v1" || cacheStatusOf(resp) != "hit; ttl=-10; detail=stale-while-revalidate" || resp.Header.Get("Age") != "20" {
			t.Fatalf("request %d: %q %q Age %s", i, b, cacheStatusOf(resp), resp.Header.Get("Age"))
		}
	}
	waitFor(t, 10*time.Second, "the background refresh at the origin", func() bool { return s.origin.n.Load() == 2 })
	if got := s.origin.lastHeader().Get("If-None-Match"); got != `` {
		t.Fatalf("the refresh sent If-None-Match %q with no ETag stored", got)
	}
	g.open()
	waitFor(t, 10*time.Second, "the refreshed response stored", func() bool {
		resp, b := s.do(t, c, "GET", "/w", nil)
		return b == "v2" && strings.HasPrefix(cacheStatusOf(resp), "hit")
	})
	if got := s.origin.n.Load(); got != 2 {
		t.Fatalf("origin saw %d requests, want 2 (one refresh)", got)
	}
}

// TestCacheStaleIfErrorOnConnectFailure: an origin that cannot be reached
// gets the stale response served within stale-if-error (RFC 5861 §4).
func TestCacheStaleIfErrorOnConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, stale-if-error=300")
		w.Header().Set("Date", cacheT0.Format(http.TimeFormat))
		io.WriteString(w, "kept")
	})}
	go srv.Serve(ln)
	s := startCacheProxyAt(t, &CacheConfig{}, addr)
	c := h1Client()
	if _, b := s.do(t, c, "GET", "/e", nil); b != "kept" {
		t.Fatalf("first: %q", b)
	}
	srv.Close() // the origin is gone: connections are refused
	s.fc.Advance(time.Minute)
	resp, b := s.do(t, c, "GET", "/e", nil)
	if resp.StatusCode != 200 || b != "kept" || cacheStatusOf(resp) != "fwd=stale; detail=stale-if-error" {
		t.Fatalf("origin down: %d %q %q", resp.StatusCode, b, cacheStatusOf(resp))
	}
	s.fc.Advance(10 * time.Minute)
	if resp, _ := s.do(t, c, "GET", "/e", nil); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("past the window: %d", resp.StatusCode)
	}
}

// startCacheProxyAt is a caching proxy on a fake clock in front of addr.
func startCacheProxyAt(t *testing.T, cc *CacheConfig, addr string) *cacheSetup {
	t.Helper()
	s := &cacheSetup{fc: newCacheClock()}
	store, _ := cache.NewMemory(cache.MemoryConfig{})
	s.store = store
	p := startProxy(t, routeWith(t, RouteConfig{Cache: cc}, &Peer{Addr: addr}), Config{Clock: s.fc, CacheStore: store}, ListenerConfig{Name: "http"})
	s.addr, s.srv = p.addr, p.srv
	return s
}

// TestCacheListeners: a miss, then a hit, on every listener kind: HTTP/1.1,
// h2c, and HTTP/2 and HTTP/1.1 over TLS.
func TestCacheListeners(t *testing.T) {
	ca := newTestCA(t)
	certs, err := NewCertStoreFromCerts([]tls.Certificate{ca.issue(t, "proxy.test")})
	if err != nil {
		t.Fatal(err)
	}
	handle := func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "%s-%d", r.URL.Path, n)
	}
	plain := startCacheSetup(t, nil, handle)
	secure := startCacheSetupApp(t, nil, handle, nil, ListenerConfig{Name: "tls", TLS: certs})
	for _, tc := range []struct {
		name string
		s    *cacheSetup
		c    *http.Client
		base string
	}{
		{"h1", plain, h1Client(), "http://" + plain.addr},
		{"h2c", plain, h2cClient(), "http://" + plain.addr},
		{"h2-tls", secure, tlsClient(ca.pool, "proxy.test", true), "https://" + secure.addr},
		{"h1-tls", secure, tlsClient(ca.pool, "proxy.test", false), "https://" + secure.addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/" + tc.name
			before := tc.s.origin.n.Load()
			r1, b1 := mustGet(t, tc.c, tc.base+path)
			tc.s.fc.Advance(3 * time.Second)
			r2, b2 := mustGet(t, tc.c, tc.base+path)
			if b1 != b2 || !strings.HasPrefix(b1, path+"-") || tc.s.origin.n.Load() != before+1 {
				t.Fatalf("bodies %q, %q; origin requests %d", b1, b2, tc.s.origin.n.Load()-before)
			}
			if cacheStatusOf(r1) != "fwd=miss; fwd-status=200; stored" || cacheStatusOf(r2) != "hit; ttl=57" || r2.Header.Get("Age") != "3" {
				t.Fatalf("Cache-Status %q then %q, Age %q", cacheStatusOf(r1), cacheStatusOf(r2), r2.Header.Get("Age"))
			}
			head, err := tc.c.Head(tc.base + path)
			if err != nil {
				t.Fatal(err)
			}
			head.Body.Close()
			if head.ContentLength != int64(len(b1)) || !strings.HasPrefix(cacheStatusOf(head), "hit") {
				t.Fatalf("HEAD: length %d, Cache-Status %q", head.ContentLength, cacheStatusOf(head))
			}
		})
	}
}

// TestCacheHitLargeBody: a hit on a body larger than the connections'
// write buffers (sent from the store's blocks: one gathered write on plain
// HTTP/1.1 and h2c, END_STREAM on the last DATA frame over HTTP/2) comes
// whole and in order on every listener kind, and so does a range of it.
func TestCacheHitLargeBody(t *testing.T) {
	ca := newTestCA(t)
	certs, err := NewCertStoreFromCerts([]tls.Certificate{ca.issue(t, "proxy.test")})
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 300<<10+7)
	for i := range body {
		body[i] = byte(i*7 + i>>10)
	}
	handle := func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(body)
	}
	plain := startCacheSetup(t, nil, handle)
	secure := startCacheSetupApp(t, nil, handle, nil, ListenerConfig{Name: "tls", TLS: certs})
	for _, tc := range []struct {
		name string
		c    *http.Client
		url  string
	}{
		{"h1", h1Client(), "http://" + plain.addr},
		{"h2c", h2cClient(), "http://" + plain.addr},
		{"h2-tls", tlsClient(ca.pool, "proxy.test", true), "https://" + secure.addr},
		{"h1-tls", tlsClient(ca.pool, "proxy.test", false), "https://" + secure.addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url + "/" + tc.name
			for i := range 3 {
				r, b := mustGet(t, tc.c, url)
				if b != string(body) || (i > 0 && !strings.HasPrefix(cacheStatusOf(r), "hit")) {
					t.Fatalf("request %d: %d bytes (want %d), Cache-Status %q", i, len(b), len(body), cacheStatusOf(r))
				}
			}
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Range", "bytes=70000-250000")
			resp, err := tc.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusPartialContent || string(b) != string(body[70000:250001]) {
				t.Fatalf("range: status %d, %d bytes, %v", resp.StatusCode, len(b), err)
			}
		})
	}
}

// TestCacheToggleLive: turning the cache on or off on a route is a table
// swap; requests after it follow the new setting.
func TestCacheToggleLive(t *testing.T) {
	fc := newCacheClock()
	o := &cacheOrigin{fc: fc, handle: func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "v%d", n)
	}}
	peer := startOrigin(t, originH1, nil, o)
	r := newTestRouter(t)
	swap := func(cc *CacheConfig) {
		tbl, err := r.Build([]UpstreamConfig{{Name: "up", Peers: []*Peer{peer}}}, []RouteConfig{{Host: "*", Upstream: "up", Cache: cc}}, "t")
		if err != nil {
			t.Fatal(err)
		}
		r.Swap(tbl)
	}
	swap(nil)
	p := startProxy(t, RouterApp{Router: r}, Config{Clock: fc}, ListenerConfig{Name: "http"})
	c := h1Client()
	get := func() (string, string) {
		resp, b := mustGet(t, c, "http://"+p.addr+"/t")
		return b, resp.Header.Get("Cache-Status")
	}
	for _, step := range []struct {
		cc           *CacheConfig
		body, status string
	}{
		{nil, "v1", ""},
		{nil, "v2", ""},
		{&CacheConfig{}, "v3", "pingora-go; fwd=miss; fwd-status=200; stored"},
		{&CacheConfig{}, "v3", "pingora-go; hit; ttl=60"},
		{nil, "v4", ""},
	} {
		swap(step.cc)
		if b, st := get(); b != step.body || st != step.status {
			t.Fatalf("got %q %q, want %q %q", b, st, step.body, step.status)
		}
	}
}

// cachePhases implements every cache phase: a key that ignores the path
// below /k/, a hit filter that forces a miss for X-Force-Miss, a response
// filter that stores "no-store" responses of /forced for 30s, and a
// request filter that bypasses the cache for X-No-Cache.
type cachePhases struct{ RouterApp }

func (a cachePhases) RequestCacheFilter(s *Session, _ struct{}) error {
	if s.Req.Header.Get("X-No-Cache") != "" {
		s.Cache = nil
	}
	return nil
}

func (a cachePhases) CacheKey(s *Session, _ struct{}) (string, error) {
	if strings.HasPrefix(s.Req.URI, "/k/") {
		return "k", nil
	}
	return DefaultCacheKey(s), nil
}

func (a cachePhases) CacheHitFilter(s *Session, m *cache.Meta, _ struct{}) (bool, error) {
	return s.Req.Header.Get("X-Force-Miss") != "", nil
}

func (a cachePhases) ResponseCacheFilter(s *Session, resp *ResponseHeader, _ struct{}, d cache.Decision) (cache.Decision, error) {
	if s.Req.URI == "/forced" {
		return cache.Decision{Store: true, Fresh: 30 * time.Second}, nil
	}
	return d, nil
}

// TestCachePhases: the four cache phases change what the cache does.
func TestCachePhases(t *testing.T) {
	s := startCacheSetupApp(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/forced" {
			w.Header().Set("Cache-Control", "no-store")
		} else {
			w.Header().Set("Cache-Control", "max-age=60")
		}
		fmt.Fprintf(w, "v%d", n)
	}, func(ra RouterApp) App[struct{}] { return cachePhases{ra} }, ListenerConfig{Name: "http"})
	c := h1Client()
	steps := []struct {
		path   string
		header http.Header
		body   string
		status string
	}{
		{"/k/one", nil, "v1", "fwd=miss; fwd-status=200; stored"},
		{"/k/two", nil, "v1", "hit"},                                         // CacheKey: one key for /k/
		{"/k/two", h("X-Force-Miss", "1"), "v2", "fwd=miss; fwd-status=200"}, // CacheHitFilter
		{"/k/one", h("X-No-Cache", "1"), "v3", ""},                           // RequestCacheFilter
		{"/forced", nil, "v4", "fwd=miss; fwd-status=200; stored"},           // ResponseCacheFilter
		{"/forced", nil, "v4", "hit; ttl=30"},
	}
	for i, st := range steps {
		resp, b := s.do(t, c, "GET", st.path, st.header)
		if b != st.body || !strings.HasPrefix(cacheStatusOf(resp), st.status) || st.status == "" && resp.Header.Get("Cache-Status") != "" {
			t.Fatalf("step %d %s: %q %q, want %q %q", i, st.path, b, resp.Header.Get("Cache-Status"), st.body, st.status)
		}
	}
}

// TestCacheMetrics: the cache's counters move with what it does.
func TestCacheMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	fc := newCacheClock()
	o := &cacheOrigin{fc: fc, handle: versioned(false, "Cache-Control", "max-age=60")}
	peer := startOrigin(t, originH1, nil, o)
	p := startProxy(t, routeWith(t, RouteConfig{Cache: &CacheConfig{}}, peer), Config{Clock: fc, Metrics: reg}, ListenerConfig{Name: "http"})
	c := h1Client()
	for _, path := range []string{"/m", "/m", "/m", "/n"} {
		mustGet(t, c, "http://"+p.addr+path)
	}
	if _, err := c.Post("http://"+p.addr+"/m", "text/plain", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	m := p.srv.metrics.cache
	for _, tc := range []struct {
		name string
		c    prometheus.Counter
		want float64
	}{
		{"hits", m.byResult[cacheHit], 2},
		{"misses", m.byResult[cacheMiss], 2},
		{"bypass", m.byResult[cacheBypass], 1},
		{"stored", m.stored, 2},
		{"bytes served", m.bytesServed, 4},
		{"invalidated", m.invalidated, 1},
	} {
		// A request is counted after its response went out: wait for it.
		waitFor(t, 10*time.Second, fmt.Sprintf("%s = %v", tc.name, tc.want), func() bool { return counterValue(tc.c) == tc.want })
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, f := range families {
		found[f.GetName()] = true
	}
	for _, name := range []string{"pingora_cache_objects", "pingora_cache_bytes", "pingora_cache_evictions_total", "pingora_cache_max_bytes", "pingora_cache_requests_total"} {
		if !found[name] {
			t.Fatalf("%s not exported", name)
		}
	}
}

// TestCacheBackgroundRefreshClose: closing the server while a background
// refresh waits on the origin ends it; Close returns.
func TestCacheBackgroundRefreshClose(t *testing.T) {
	g := newGate()
	defer g.open()
	s := startCacheSetup(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n > 1 {
			g.wait(r)
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
		fmt.Fprintf(w, "v%d", n)
	})
	c := h1Client()
	s.do(t, c, "GET", "/b", nil)
	s.fc.Advance(5 * time.Second)
	s.do(t, c, "GET", "/b", nil)
	waitFor(t, 10*time.Second, "the refresh at the origin", func() bool { return s.origin.n.Load() == 2 })
	done := make(chan struct{})
	go func() { s.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited on a background refresh")
	}
}

// TestCacheHitFromBlocks: a body stored in several blocks (its length
// unknown while it was filled) is sent from the blocks on a hit, whole,
// as a range across blocks, and for HEAD, over HTTP/1.1 (one gathered
// write) and h2c, on reused connections.
func TestCacheHitFromBlocks(t *testing.T) {
	body := make([]byte, 300<<10)
	for i := range body {
		body[i] = byte(i * 7 / 5)
	}
	s := startCacheSetup(t, nil, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		for p := body; len(p) > 0; {
			n := min(len(p), 10_000)
			w.Write(p[:n])
			w.(http.Flusher).Flush() // chunked: the store grows block by block
			p = p[n:]
		}
	})
	for _, tc := range []struct {
		name string
		c    *http.Client
	}{{"h1", h1Client()}, {"h2c", h2cClient()}} {
		t.Run(tc.name, func(t *testing.T) {
			url := "http://" + s.addr + "/" + tc.name
			for i := range 3 {
				resp, b := s.do(t, tc.c, "GET", "/"+tc.name, nil)
				if b != string(body) {
					t.Fatalf("GET %d: %d bytes, Cache-Status %q: not the origin's body", i, len(b), cacheStatusOf(resp))
				}
				if i > 0 && !strings.HasPrefix(cacheStatusOf(resp), "hit") {
					t.Fatalf("GET %d: Cache-Status %q, want a hit", i, cacheStatusOf(resp))
				}
			}
			resp, b := s.do(t, tc.c, "GET", "/"+tc.name, h("Range", "bytes=70000-200000"))
			if resp.StatusCode != http.StatusPartialContent || b != string(body[70000:200001]) {
				t.Fatalf("range: %d, %d bytes", resp.StatusCode, len(b))
			}
			head, err := tc.c.Head(url)
			if err != nil {
				t.Fatal(err)
			}
			head.Body.Close()
			if head.ContentLength != int64(len(body)) {
				t.Fatalf("HEAD: length %d", head.ContentLength)
			}
			if _, b := s.do(t, tc.c, "GET", "/"+tc.name, nil); b != string(body) {
				t.Fatalf("GET after HEAD on the same connection: %d bytes", len(b))
			}
			if n := s.origin.n.Load(); n > 2 {
				t.Fatalf("origin requests %d, want one per listener", n)
			}
		})
	}
}
