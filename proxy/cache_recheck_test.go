package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// gapStore is a Store that runs before(n) in its n-th Lock call (from
// 1), before the store's Lock: what happens there happens between that
// request's lookup and its lock; and after(n, fill) once the store's Lock
// returned, fill telling whether it gave the caller the fill.
type gapStore struct {
	cache.Store
	calls  atomic.Int64
	before func(n int64)
	after  func(n int64, fill bool)
}

func (g *gapStore) Lock(ctx context.Context, key string, wait time.Duration) (cache.Fill, cache.Object, error) {
	n := g.calls.Add(1)
	if g.before != nil {
		g.before(n)
	}
	f, o, err := g.Store.Lock(ctx, key, wait)
	if g.after != nil {
		g.after(n, f != nil)
	}
	return f, o, err
}

// startGapSetup is startCacheSetup with a gapStore between the engine
// and the Memory store (the lock waits counted under it).
func startGapSetup(t *testing.T) (*cacheSetup, *gapStore) {
	t.Helper()
	fc := newCacheClock()
	o := &cacheOrigin{fc: fc, handle: func(n int64, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "v%d", n)
	}}
	peer := startOrigin(t, originH1, nil, o)
	store, err := cache.NewMemory(cache.MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	locks := &lockCounter{Store: store}
	gs := &gapStore{Store: locks}
	p := startProxy(t, routeWith(t, RouteConfig{Cache: &CacheConfig{LockTimeout: time.Minute}}, peer),
		Config{Clock: fc, CacheStore: gs}, ListenerConfig{Name: "http"})
	return &cacheSetup{fc: fc, origin: o, addr: p.addr, store: store, locks: locks, srv: p.srv}, gs
}

// TestCacheFillStoredBeforeLock: request A misses; before it takes the
// key's lock, request B misses, fills and stores the key. A is served
// what B stored: the origin sees one request, not two.
func TestCacheFillStoredBeforeLock(t *testing.T) {
	s, gs := startGapSetup(t)
	gs.before = func(n int64) {
		if n == 1 { // A's lock: B runs first
			s.fillMeanwhile(t)
		}
	}
	resp, b := s.do(t, h1Client(), "GET", "/k", nil)
	if n := s.origin.n.Load(); b != "v1" || n != 1 {
		t.Fatalf("A got %q (Cache-Status %q); the origin saw %d requests, want 1", b, cacheStatusOf(resp), n)
	}
	if st := cacheStatusOf(resp); st != "fwd=miss; collapsed" {
		t.Fatalf("A's Cache-Status %q", st)
	}
	// Once stale, the key is filled again.
	s.fc.Advance(2 * time.Minute)
	if _, b := s.do(t, h1Client(), "GET", "/k", nil); b != "v2" {
		t.Fatalf("after it went stale: %q", b)
	}
}

// fillMeanwhile is request B: it misses, fills and stores the key. It
// runs in the proxy's goroutines (a Store hook), so it reports failures
// with Errorf.
func (cs *cacheSetup) fillMeanwhile(t *testing.T) {
	if b, err := cs.get("/k"); b != "v1" || err != nil {
		t.Errorf("B got %q, %v", b, err)
	}
	if !poll(10*time.Second, func() bool { return cs.store.Stats().Objects == 1 }) {
		t.Error("B's fill was not stored")
	}
}

// get is do for goroutines other than the test's: it returns the body.
func (cs *cacheSetup) get(path string) (string, error) {
	resp, err := h1Client().Get("http://" + cs.addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// poll is waitFor for goroutines other than the test's: it reports
// whether cond held before d passed.
func poll(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond) // sleep-ok: polling interval of a condition wait
	}
	return true
}

// TestCacheWaiterOfAGivenUpLock: request C misses before B stores the
// key and asks for the lock after A took it: C waits on A's fill. A
// gives its lock up for B's object, which wakes C; C finds that object
// too and is not sent to the origin.
func TestCacheWaiterOfAGivenUpLock(t *testing.T) {
	s, gs := startGapSetup(t)
	cLocking, cGo := make(chan struct{}), make(chan struct{})
	c := make(chan string, 1) // C's body
	gs.before = func(n int64) {
		switch n {
		case 1: // A's lock: C looks up, then B fills
			go func() { b, _ := s.get("/k"); c <- b }()
			<-cLocking
			s.fillMeanwhile(t)
		case 2: // C's lock waits until A holds the key's
			close(cLocking)
			<-cGo
		}
	}
	gs.after = func(n int64, fill bool) {
		if n == 1 {
			close(cGo)
		}
		if n == 1 && fill {
			if !poll(10*time.Second, func() bool { return s.locks.waiting.Load() == 1 }) {
				t.Error("C is not waiting on A's lock")
			}
		}
	}
	_, a := s.do(t, h1Client(), "GET", "/k", nil)
	if b := <-c; a != "v1" || b != "v1" || s.origin.n.Load() != 1 {
		t.Fatalf("A got %q, C got %q; the origin saw %d requests, want 1", a, b, s.origin.n.Load())
	}
}

// TestCacheRefreshStoredBeforeLock: request A finds the key stale within
// stale-while-revalidate; before it takes the key's lock, request B finds
// it stale too and B's background refresh stores a fresh response. A is
// served that response and starts no refresh of its own: the origin sees
// one refresh, not two.
func TestCacheRefreshStoredBeforeLock(t *testing.T) {
	s, gs := startGapSetup(t)
	s.origin.handle = func(n int64, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		fmt.Fprintf(w, "v%d", n)
	}
	bgIdle := func() bool {
		s.srv.bg.mu.Lock()
		defer s.srv.bg.mu.Unlock()
		return len(s.srv.bg.sessions) == 0
	}
	c := h1Client()
	if _, b := s.do(t, c, "GET", "/k", nil); b != "v1" { // Lock call 1: the miss's fill
		t.Fatalf("first: %q", b)
	}
	s.fc.Advance(20 * time.Second) // stale, within stale-while-revalidate
	gs.before = func(n int64) {
		if n != 2 { // A's lock: B and its refresh (Lock call 3) run first
			return
		}
		if b, err := s.get("/k"); b != "v1" || err != nil {
			t.Errorf("B got %q, %v; want the stale v1", b, err)
		}
		if !poll(10*time.Second, func() bool { return s.origin.n.Load() == 2 && bgIdle() }) {
			t.Error("B's refresh did not end")
		}
	}
	resp, b := s.do(t, c, "GET", "/k", nil)
	waitFor(t, 10*time.Second, "no refresh under way", bgIdle)
	if n := s.origin.n.Load(); b != "v2" || n != 2 {
		t.Fatalf("A got %q (Cache-Status %q); the origin saw %d requests, want 2 (one refresh)", b, cacheStatusOf(resp), n)
	}
	if st := cacheStatusOf(resp); st != "hit; ttl=10" {
		t.Fatalf("A's Cache-Status %q, want a hit", st)
	}
}
