package proxy

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// TestCacheHitForPass: a response that may never be stored (here
// private) marks its key, and the next requests for it go to the origin at
// once instead of queueing on the key's lock behind the one under way;
// the marker expires after hitForPassTTL.
func TestCacheHitForPass(t *testing.T) {
	g := newGate()
	defer g.open()
	s := startCacheSetup(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 2 {
			g.wait(r) // the second request is held at the origin
		}
		w.Header().Set("Cache-Control", "private, max-age=60")
		fmt.Fprintf(w, "v%d", n)
	})
	c := h1Client()
	if resp, b := s.do(t, c, "GET", "/p", nil); b != "v1" || !strings.Contains(cacheStatusOf(resp), "detail=private") {
		t.Fatalf("first: %q %q", b, cacheStatusOf(resp))
	}
	held := make(chan string, 1)
	go func() { _, b := s.do(t, h1Client(), "GET", "/p", nil); held <- b }()
	waitFor(t, 10*time.Second, "the second request at the origin", func() bool { return s.origin.n.Load() == 2 })
	// The third does not wait for the second's lock: it reaches the
	// origin while the second is held there.
	resp, b := s.do(t, c, "GET", "/p", nil)
	if b != "v3" || !strings.Contains(cacheStatusOf(resp), "detail=hit-for-pass") {
		t.Fatalf("third, with the second held: %q %q", b, cacheStatusOf(resp))
	}
	g.open()
	if b := <-held; b != "v2" {
		t.Fatalf("second: %q", b)
	}
	if s.locks.waiting.Load() != 0 {
		t.Fatal("a request still waits on the lock")
	}
	s.fc.Advance(hitForPassTTL)
	if resp, _ := s.do(t, c, "GET", "/p", nil); strings.Contains(cacheStatusOf(resp), "hit-for-pass") {
		t.Fatalf("after the marker's time: %q", cacheStatusOf(resp))
	}
}

// TestCacheHitForPassReleased: a request that passes and gets a response
// that may be stored drops the marker, so the key is cached again from the
// next request on; a reason of the request (its no-store) marks nothing.
func TestCacheHitForPassReleased(t *testing.T) {
	var private atomic.Bool
	private.Store(true)
	s := startCacheSetup(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
		if private.Load() {
			w.Header().Set("Cache-Control", "private")
		} else {
			w.Header().Set("Cache-Control", "max-age=60")
		}
		fmt.Fprintf(w, "v%d", n)
	})
	c := h1Client()
	s.do(t, c, "GET", "/k", nil) // marks /k
	private.Store(false)
	steps := []struct{ body, status string }{
		{"v2", "detail=hit-for-pass"}, // passes; its response may be stored: the marker goes
		{"v3", "stored"},              // takes the lock and stores
		{"v3", "hit"},
	}
	for i, st := range steps {
		if resp, b := s.do(t, c, "GET", "/k", nil); b != st.body || !strings.Contains(cacheStatusOf(resp), st.status) {
			t.Fatalf("step %d: %q %q, want %q with %q", i, b, cacheStatusOf(resp), st.body, st.status)
		}
	}
	// The request's own no-store is no reason to pass for others.
	if _, b := s.do(t, c, "GET", "/n", http.Header{"Cache-Control": {"no-store"}}); b != "v4" {
		t.Fatalf("no-store request: %q", b)
	}
	if resp, b := s.do(t, c, "GET", "/n", nil); b != "v5" || !strings.Contains(cacheStatusOf(resp), "stored") {
		t.Fatalf("after a request's no-store: %q %q, want it stored", b, cacheStatusOf(resp))
	}
}

// failingOwner is a Store whose Lock answers as another node's fill that
// stored nothing (cache.ErrFillFailed), as a shared route's owner does
// for a response it may not keep, and counts those calls.
type failingOwner struct {
	cache.Store
	locks atomic.Int64
}

func (f *failingOwner) Lock(ctx context.Context, key string, wait time.Duration) (cache.Fill, cache.Object, error) {
	f.locks.Add(1)
	return nil, nil, cache.ErrFillFailed
}

// TestCacheHitForPassSharedOwner: on a shared route a miss asks the key's
// owner to fill it; when that fill stored nothing (the owner fetched a
// private response and dropped it) the node fetches the response itself.
// It then marks the key, so the next requests go straight to the origin
// instead of having the owner fetch each one again for nothing.
func TestCacheHitForPassSharedOwner(t *testing.T) {
	store, err := cache.NewMemory(cache.MemoryConfig{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	owner := &failingOwner{Store: store}
	var hits atomic.Int64
	peer := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "private")
		w.Write([]byte("mine"))
	}))
	p := startProxy(t, routeWith(t, RouteConfig{Cache: &CacheConfig{}}, peer), Config{CacheStore: owner}, ListenerConfig{Name: "http"})
	c := h1Client()
	for i := 0; i < 3; i++ {
		resp, err := c.Get("http://" + p.addr + "/p")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if owner.locks.Load() != 1 || hits.Load() != 3 {
		t.Fatalf("3 requests: %d asked the owner, %d reached the origin; want 1 and 3", owner.locks.Load(), hits.Load())
	}
}

// TestPassSetBounded: the markers stay under hitForPassMax whatever the
// number of keys marked.
func TestPassSetBounded(t *testing.T) {
	var p passSet
	now := cacheT0
	for i := 0; i < 3*hitForPassMax; i++ {
		p.mark(fmt.Sprint(i), "private", now)
	}
	if n := len(p.m); n > hitForPassMax {
		t.Fatalf("%d markers, want at most %d", n, hitForPassMax)
	}
	if p.marked(fmt.Sprint(3*hitForPassMax-1), now) != "private" || p.marked("0", now.Add(hitForPassTTL)) != "" {
		t.Fatal("a marker just set is missing, or an expired one is still there")
	}
}

// TestPassSetKeyBytesBounded: a marker costs the same whatever its key's
// length. A key holds the request's URI, up to the head limit (64 KiB by
// default), and the markers are bounded in number only: before, 16,384
// private URLs of 30 KB each held 480 MB on the node that marked them (and
// a third of it again on each owner), whatever cache_memory_bytes said.
func TestPassSetKeyBytesBounded(t *testing.T) {
	var p passSet
	now := cacheT0
	const n, size = 2048, 32 << 10 // 64 MiB of keys
	buf := []byte(strings.Repeat("k", size))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		copy(buf, fmt.Sprint(i, "/"))
		p.mark(string(buf), "private", now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Fatalf("%d markers of %d-byte keys hold %d MiB; want a few KiB each whatever the key", n, size, grew>>20)
	}
	copy(buf, fmt.Sprint(n-1, "/"))
	if p.marked(string(buf), now) != "private" {
		t.Fatal("the last marker set is missing")
	}
	copy(buf, fmt.Sprint(n, "/"))
	if p.marked(string(buf), now) != "" {
		t.Fatal("a key never marked is marked")
	}
	runtime.KeepAlive(&p)
}

// reasonOwner is a failingOwner whose failed fill says why, as a shared
// route's owner does (cache.NotStorable in the wire's head frame).
type reasonOwner struct {
	failingOwner
	reason string
}

func (f *reasonOwner) Lock(ctx context.Context, key string, wait time.Duration) (cache.Fill, cache.Object, error) {
	f.locks.Add(1)
	return nil, nil, fmt.Errorf("%w: %w", cache.ErrFillFailed, &cache.NotStorable{Reason: f.reason})
}

// TestCacheHitForPassOwnerReason: when the owner's fill says why it
// stored nothing, the node reports that reason in Cache-Status (not
// fill-failed) and marks the key with it, even when its own copy of the
// response looks storable: the owner ran the whole decision, its
// ResponseCacheFilter included, which the node cannot check on the
// response it fetches itself. Before, a filter's refusal at the owner had
// every request ask the owner again (two origin requests each).
func TestCacheHitForPassOwnerReason(t *testing.T) {
	store, err := cache.NewMemory(cache.MemoryConfig{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	owner := &reasonOwner{failingOwner: failingOwner{Store: store}, reason: "filter"}
	peer := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("refused by the owner's filter"))
	}))
	p := startProxy(t, routeWith(t, RouteConfig{Cache: &CacheConfig{}}, peer), Config{CacheStore: owner}, ListenerConfig{Name: "http"})
	c := h1Client()
	var statuses []string
	for range 3 {
		resp, err := c.Get("http://" + p.addr + "/p")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, cacheStatusOf(resp))
	}
	if !strings.Contains(statuses[0], "detail=filter") {
		t.Fatalf("first request's Cache-Status %q, want the owner's reason (detail=filter)", statuses[0])
	}
	if !strings.Contains(statuses[1], "detail=hit-for-pass") || owner.locks.Load() != 1 {
		t.Fatalf("the owner was asked %d times for 3 requests, want 1; Cache-Status %q", owner.locks.Load(), statuses)
	}
}

// TestCacheHitForPassSharedOwnerConnectionNamed: as
// TestCacheHitForPassSharedOwner, for a response whose Connection names
// its Vary (detail=connection-named): the node that fetched it itself
// marks the key too. Before, its reason was read without the flag and
// found the response storable (its Vary already removed), so every
// request asked the owner again.
func TestCacheHitForPassSharedOwnerConnectionNamed(t *testing.T) {
	store, err := cache.NewMemory(cache.MemoryConfig{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	owner := &failingOwner{Store: store}
	var hits atomic.Int64
	peer := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Cookie")
		w.Header().Set("Connection", "Vary")
		w.Write([]byte("mine"))
	}))
	p := startProxy(t, routeWith(t, RouteConfig{Cache: &CacheConfig{}}, peer), Config{CacheStore: owner}, ListenerConfig{Name: "http"})
	c := h1Client()
	var statuses []string
	for range 3 {
		resp, err := c.Get("http://" + p.addr + "/p")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, cacheStatusOf(resp))
	}
	if owner.locks.Load() != 1 || hits.Load() != 3 {
		t.Fatalf("3 requests: %d asked the owner, %d reached the origin; want 1 and 3 (Cache-Status %q)", owner.locks.Load(), hits.Load(), statuses)
	}
}
