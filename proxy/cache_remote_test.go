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

// recordingStore is a Store that records the request each Lookup and
// Lock carried in its context (cache.RequestFrom).
type recordingStore struct {
	cache.Store
	reqs chan cache.Request
}

func (r *recordingStore) Lock(ctx context.Context, key string, wait time.Duration) (cache.Fill, cache.Object, error) {
	if q := cache.RequestFrom(ctx); q != nil {
		c := *q
		c.Header = q.Header.Clone()
		select {
		case r.reqs <- c:
		default:
		}
	}
	return r.Store.Lock(ctx, key, wait)
}

// TestCacheStoreSeesRequest: the engine's Lock carries the request (method,
// scheme, host, target, fields, client address) in its context, for a
// store that fills elsewhere.
func TestCacheStoreSeesRequest(t *testing.T) {
	s := startCacheSetup(t, nil, serve("x", "Cache-Control", "max-age=60"))
	rec := &recordingStore{Store: s.store, reqs: make(chan cache.Request, 1)} // one Lock below
	s.locks.Store = rec
	s.do(t, h1Client(), "GET", "/r?q=1", http.Header{"X-Test": {"yes"}})
	q := <-rec.reqs
	if q.Method != "GET" || q.Scheme != "http" || q.URI != "/r?q=1" || q.Header.Get("X-Test") != "yes" || q.ClientIP != "127.0.0.1" || q.Host == "" {
		t.Fatalf("request seen by the store: %+v", q)
	}
}

// TestFillCache: FillCache fetches a request through the route into a
// fill taken by the caller (the object is stored and the origin sees the
// forwarded fields), revalidates a stale object with its validators (a
// 304 refreshes it), and ends a fill it cannot use (no route).
func TestFillCache(t *testing.T) {
	s := startCacheSetup(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10")
		if r.URL.Path == "/ns" {
			w.Header().Set("Cache-Control", "no-store")
		}
		w.Header().Set("ETag", `"e1"`)
		if r.Header.Get("If-None-Match") == `"e1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "body%d", n)
	})
	ctx := context.Background()
	key := "GET http://fill.test/f"
	req := &cache.Request{Method: "GET", Scheme: "https", Host: "fill.test", URI: "/f", Header: http.Header{"Range": {"bytes=0-1"}}, ClientIP: "192.0.2.7"}
	f, _, _ := s.store.Lock(ctx, key, 0)
	s.srv.FillCache(ctx, CacheFill{Request: req, Key: key, VariantKey: key, Fill: f, Store: s.store})
	o, _ := s.store.Lookup(ctx, key)
	if o == nil || o.Len() != 5 {
		t.Fatalf("after FillCache the store holds %v", o)
	}
	last := s.origin.lastHeader()
	if last.Get("X-Forwarded-For") != "192.0.2.7" || last.Get("X-Forwarded-Proto") != "https" || last.Get("Range") != "" {
		t.Fatalf("origin saw %v", last)
	}
	s.fc.Advance(time.Minute)
	f, _, _ = s.store.Lock(ctx, key, 0)
	s.srv.FillCache(ctx, CacheFill{Request: req, Key: key, VariantKey: key, Fill: f, Stale: o, Store: s.store})
	o2, _ := s.store.Lookup(ctx, key)
	if s.origin.n.Load() != 2 || o2 == nil || !o2.Meta().ResponseTime.Equal(s.fc.Now()) {
		t.Fatalf("revalidation: %d origin requests, object %v", s.origin.n.Load(), o2)
	}
	r, _ := o2.NewReader(ctx, 0)
	if b, _ := io.ReadAll(r); string(b) != "body1" {
		t.Fatalf("refreshed body %q", b)
	}
	// A fill whose response may not be stored is aborted, its lock freed.
	nk := "GET http://fill.test/ns"
	f, _, _ = s.store.Lock(ctx, nk, 0)
	s.srv.FillCache(ctx, CacheFill{Request: &cache.Request{Method: "GET", Scheme: "http", Host: "fill.test", URI: "/ns"},
		Key: nk, VariantKey: nk, Fill: f, Store: s.store})
	if f2, o, err := s.store.Lock(ctx, nk, time.Second); f2 == nil || o != nil || err != nil {
		t.Fatalf("the unstorable fill was not ended: %v %v %v", f2, o, err)
	}
}

// denyAll is a Limiter that refuses every request.
type denyAll struct{ calls atomic.Int64 }

func (d *denyAll) Limit(*Session, *LimitDecision) LimitDecision {
	d.calls.Add(1)
	return LimitDecision{Deny: true}
}

// TestFillCacheNotLimited: a fill run for another node is the cache's own
// request: the Limiter does not see it, so a client's limits neither
// count it nor refuse it.
func TestFillCacheNotLimited(t *testing.T) {
	o := &cacheOrigin{fc: newCacheClock(), handle: serve("x", "Cache-Control", "max-age=60")}
	peer := startOrigin(t, originH1, nil, o)
	store, _ := cache.NewMemory(cache.MemoryConfig{MaxBytes: 1 << 20})
	lim := &denyAll{}
	p := startProxy(t, routeWith(t, RouteConfig{Cache: &CacheConfig{}}, peer), Config{Clock: o.fc, CacheStore: store, Limiter: lim}, ListenerConfig{Name: "http"})
	ctx := context.Background()
	key := "GET http://fill.test/l"
	f, _, _ := store.Lock(ctx, key, 0)
	p.srv.FillCache(ctx, CacheFill{Request: &cache.Request{Method: "GET", Scheme: "http", Host: "fill.test", URI: "/l"}, Key: key, VariantKey: key, Fill: f, Store: store})
	if obj, _ := store.Lookup(ctx, key); obj == nil || lim.calls.Load() != 0 {
		t.Fatalf("stored %v, limiter called %d times", obj, lim.calls.Load())
	}
}

// pipeStore is a Store whose every Lock hands over obj, as a waiter's
// object: the body another node streams in.
type pipeStore struct {
	cache.Store
	obj cache.Object
}

func (p *pipeStore) Lookup(context.Context, string) (cache.Object, error) { return nil, nil }

func (p *pipeStore) Lock(context.Context, string, time.Duration) (cache.Fill, cache.Object, error) {
	return nil, p.obj, nil
}

// TestCachedBodyCutByWrappedEOF: a stored body that fails with an error
// wrapping io.EOF (a cluster stream whose owner's connection closed) cuts
// the client's chunked response; it used to end it with the last chunk,
// a short body that read as complete.
func TestCachedBodyCutByWrappedEOF(t *testing.T) {
	s := startCacheSetup(t, nil, serve("never", "Cache-Control", "max-age=60"))
	meta := &cache.Meta{Status: 200, Header: http.Header{"Cache-Control": {"max-age=60"}}, RequestTime: cacheT0, ResponseTime: cacheT0, Fresh: time.Minute}
	p := cache.NewPipe(meta, 1<<20)
	p.Write([]byte("first half;"))
	s.locks.Store = &pipeStore{Store: s.store, obj: p.Object()}
	resp, err := h1Client().Get("http://" + s.addr + "/cut")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p.CloseWithError(fmt.Errorf("wire: peer gone (%w)", io.EOF)) // the head is out: the body is cut
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("a body cut after %d bytes (%q) read as complete", len(b), b)
	}
	if n := s.origin.n.Load(); n != 0 {
		t.Fatalf("the origin was asked %d times", n)
	}
}
