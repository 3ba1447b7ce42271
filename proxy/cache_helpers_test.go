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

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/cache"
)

// cacheT0 is where the cache tests' fake clocks start.
var cacheT0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// cacheOrigin is an origin for cache tests: it counts requests, records
// the last one's fields, and stamps Date from the test's fake clock.
type cacheOrigin struct {
	fc     *clock.Fake
	n      atomic.Int64
	mu     sync.Mutex
	last   http.Header
	handle func(n int64, w http.ResponseWriter, r *http.Request)
}

func (o *cacheOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := o.n.Add(1)
	o.mu.Lock()
	o.last = r.Header.Clone()
	o.mu.Unlock()
	w.Header().Set("Date", o.fc.Now().Format(http.TimeFormat))
	o.handle(n, w, r)
}

func (o *cacheOrigin) lastHeader() http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// cacheSetup is a proxy with one caching route in front of a cacheOrigin.
type cacheSetup struct {
	fc     *clock.Fake
	origin *cacheOrigin
	addr   string
	store  *cache.Memory
	locks  *lockCounter
	srv    *Server[struct{}]
}

// lockCounter is a Store that counts the Lock calls under way: the
// requests waiting on another request's fill.
type lockCounter struct {
	cache.Store
	waiting atomic.Int64
}

func (l *lockCounter) Lock(ctx context.Context, key string, wait time.Duration) (cache.Fill, cache.Object, error) {
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	return l.Store.Lock(ctx, key, wait)
}

// startCacheSetup starts an origin running handle and a proxy caching
// every request with cc (nil: defaults), on a fake clock.
func startCacheSetup(t testing.TB, cc *CacheConfig, handle func(n int64, w http.ResponseWriter, r *http.Request)) *cacheSetup {
	t.Helper()
	return startCacheSetupApp(t, cc, handle, nil, ListenerConfig{Name: "http", H2C: true})
}

// startCacheSetupApp is startCacheSetup with an App wrapping the router
// (wrap nil: RouterApp) and a listener config.
func startCacheSetupApp(t testing.TB, cc *CacheConfig, handle func(n int64, w http.ResponseWriter, r *http.Request),
	wrap func(RouterApp) App[struct{}], lc ListenerConfig) *cacheSetup {
	t.Helper()
	fc := clock.NewFake(cacheT0)
	o := &cacheOrigin{fc: fc, handle: handle}
	peer := startOrigin(t, originH1, nil, o)
	if cc == nil {
		cc = &CacheConfig{}
	}
	store, err := cache.NewMemory(cache.MemoryConfig{MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ra := routeWith(t, RouteConfig{Cache: cc}, peer)
	var app App[struct{}] = ra
	if wrap != nil {
		app = wrap(ra)
	}
	locks := &lockCounter{Store: store}
	p := startProxy(t, app, Config{Clock: fc, CacheStore: locks}, lc)
	return &cacheSetup{fc: fc, origin: o, addr: p.addr, store: store, locks: locks, srv: p.srv}
}

// do sends one request and returns the response with its body read.
func (cs *cacheSetup) do(t testing.TB, c *http.Client, method, path string, h http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+cs.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return resp, string(b)
}

// cacheStatusOf returns a response's Cache-Status without the cache name.
func cacheStatusOf(resp *http.Response) string {
	_, after, _ := strings.Cut(resp.Header.Get("Cache-Status"), "; ")
	return after
}

// serve returns an origin handler that answers every request with the
// given fields and body.
func serve(body string, kv ...string) func(int64, http.ResponseWriter, *http.Request) {
	return func(_ int64, w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Add(kv[i], kv[i+1])
		}
		io.WriteString(w, body)
	}
}

func newCacheClock() *clock.Fake { return clock.NewFake(cacheT0) }

// smallStore is a memory store that keeps no body over maxObject bytes,
// whatever a route's MaxObjectBytes says.
func smallStore(maxObject int64) cache.Store {
	m, err := cache.NewMemory(cache.MemoryConfig{MaxBytes: 1 << 20, MaxObjectBytes: maxObject})
	if err != nil {
		panic(err)
	}
	return m
}
