package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/cache"
)

// namedCacheOrigin answers "<name> <path>" with the fields the cache
// tests use, stamps Date from the fake clock, and records each path it
// was asked for.
type namedCacheOrigin struct {
	name string
	fc   *clock.Fake
	mu   sync.Mutex
	seen map[string]int
}

func (o *namedCacheOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.seen[r.URL.Path]++
	o.mu.Unlock()
	w.Header().Set("Date", o.fc.Now().Format(http.TimeFormat))
	w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
	fmt.Fprintf(w, "%s %s", o.name, r.URL.Path)
}

func (o *namedCacheOrigin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[path]
}

// TestCacheRefreshHashesLikeItsRequest: on a ketama route hashed by
// client_ip behind a trusted load balancer, the background refresh of a
// stale-while-revalidate response goes to the origin a foreground miss of
// the same client goes to: the client the balancer reported, not the
// balancer's own address.
func TestCacheRefreshHashesLikeItsRequest(t *testing.T) {
	fc := clock.NewFake(cacheT0)
	origins := []*namedCacheOrigin{{name: "a", fc: fc, seen: map[string]int{}}, {name: "b", fc: fc, seen: map[string]int{}}}
	var peers []*Peer
	for _, o := range origins {
		peers = append(peers, startOrigin(t, originH1, nil, o))
	}
	hk, err := ParseHashKey("client_ip")
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRouter(t)
	tbl, err := r.Build([]UpstreamConfig{{Name: "up", Policy: "ketama", HashKey: hk, Peers: peers}},
		[]RouteConfig{{Host: "*", Upstream: "up", Cache: &CacheConfig{}}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(tbl)
	store, err := cache.NewMemory(cache.MemoryConfig{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, RouterApp{Router: r}, Config{Clock: fc, CacheStore: store},
		ListenerConfig{Name: "http", TrustedProxies: prefixes(t, "127.0.0.0/8")})
	c := h1Client()
	get := func(path, client string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
		if client != "" {
			req.Header.Set("X-Forwarded-For", client)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// The origin the balancer's own address hashes to, and a client
	// that hashes to the other one.
	lb, _, _ := strings.Cut(get("/probe-lb", ""), " ")
	client, want := "", ""
	for i := range 64 {
		ip := fmt.Sprintf("203.0.113.%d", i+1)
		if o, _, _ := strings.Cut(get(fmt.Sprintf("/probe-%d", i), ip), " "); o != lb {
			client, want = ip, o
			break
		}
	}
	if client == "" {
		t.Fatal("no client address hashes to the other origin")
	}
	if got := get("/w", client); got != want+" /w" {
		t.Fatalf("foreground miss: %q, want %s's", got, want)
	}
	fc.Advance(20 * time.Second)
	if got := get("/w", client); got != want+" /w" {
		t.Fatalf("stale hit: %q", got)
	}
	waitFor(t, 10*time.Second, "the background refresh at an origin", func() bool {
		return origins[0].count("/w")+origins[1].count("/w") == 2
	})
	for _, o := range origins {
		if o.name == lb && o.count("/w") != 0 {
			t.Fatalf("the refresh went to %s, the balancer's origin; the client's is %s", lb, want)
		}
	}
	// A fill for another node (a shared route's owner fetching for the
	// node that missed) hashes the client that node was told of too.
	ctx := context.Background()
	key := "GET http://shop.test/f"
	f, _, _ := store.Lock(ctx, key, 0)
	p.srv.FillCache(ctx, CacheFill{Request: &cache.Request{Method: "GET", Scheme: "http", Host: "shop.test", URI: "/f",
		ClientIP: "127.0.0.1", ForwardedIP: client}, Key: key, VariantKey: key, Fill: f, Store: store})
	for _, o := range origins {
		if o.name == lb && o.count("/f") != 0 {
			t.Fatalf("the fill for another node went to %s, the balancer's origin; the client's is %s", lb, want)
		}
	}
}
