package sharedcache

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/wire"
)

// tcpPair is two Caches, "a" and "b", calling each other over loopback
// TCP, with hot copies off (HotBytes 1) so every lookup of b's keys at a
// goes to b.
func tcpPair(b *testing.B, size int) (a, owner *Cache, keys []string) {
	b.Helper()
	clk := &testClock{}
	origin := &fakeOrigin{clk: clk, size: size}
	addrs := map[string]string{}
	caches := map[string]*Cache{}
	for _, name := range []string{"a", "b"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addrs[name] = ln.Addr().String()
		cl, _ := wire.NewClient(wire.ClientConfig{MaxIdleStreamConns: 16})
		c, err := New(Config{Name: name, Client: cl, Clock: clk, HotBytes: 1,
			Origin: OriginFunc(func(_ context.Context, f OriginFill) { origin.fill(f.VariantKey, f.Fill) })})
		if err != nil {
			b.Fatal(err)
		}
		srv, _ := wire.NewServer(wire.ServerConfig{Logger: slog.New(slog.DiscardHandler)})
		c.Serve(srv)
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(ln) }()
		b.Cleanup(func() { cl.Close(); srv.Close(); <-done; c.Close() })
		caches[name] = c
	}
	for name, c := range caches {
		r := newFakeRing(name, "a", "b")
		c.SetRing(addrRing{r, addrs})
	}
	for i := 0; len(keys) < 1000; i++ {
		k := testKey(i)
		if ownerOf(k, "a", "b") != "b" {
			continue
		}
		f, _, _ := caches["b"].local.Lock(context.Background(), k, 0)
		origin.fill(k, f)
		keys = append(keys, k)
	}
	return caches["a"], caches["b"], keys
}

// addrRing is a fakeRing with real addresses.
type addrRing struct {
	*fakeRing
	addrs map[string]string
}

func (r addrRing) Addr(id string) string { return r.addrs[id] }

func readAll(b *testing.B, c *Cache, key string, buf []byte) {
	ctx := cache.WithRequest(context.Background(), &cache.Request{Method: "GET", Scheme: "http", Host: "origin.test", URI: "/", Header: http.Header{}})
	o, err := c.Lookup(ctx, key)
	if err != nil || o == nil {
		b.Fatalf("lookup %s: %v %v", key, o, err)
	}
	r, err := o.NewReader(ctx, 0)
	if err != nil {
		b.Fatal(err)
	}
	for {
		if _, err := r.Read(buf); err == io.EOF {
			break
		} else if err != nil {
			b.Fatal(err)
		}
	}
	r.Close()
}

// BenchmarkLookup reads an object through Lookup: at its owner (local),
// and at another node over loopback TCP (remote, hot copies off). The
// difference is what a remote-owner hit adds.
func BenchmarkLookup(b *testing.B) {
	for _, size := range []int{100, 100 << 10} {
		for _, where := range []string{"local", "remote"} {
			b.Run(where+"/"+strconv.Itoa(size), func(b *testing.B) {
				a, owner, keys := tcpPair(b, size)
				c := a
				if where == "local" {
					c = owner
				}
				buf := make([]byte, 32<<10)
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					readAll(b, c, keys[i%len(keys)], buf)
				}
				b.StopTimer()
				time.Sleep(0) // sleep-ok: no wait, keeps the import used when trimmed
			})
		}
	}
}

// BenchmarkApplyLate: the pass a node that comes back makes over its
// tiers: 50,000 stored objects, and 1,000 missed purges of one URL each
// (merged: a map lookup per object), none of which selects them.
func BenchmarkApplyLate(b *testing.B) {
	clk := &testClock{}
	origin := &fakeOrigin{clk: clk, size: 64}
	c, err := New(Config{Name: "a", Clock: clk, MaxBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for i := range 50000 {
		f, _, _ := c.local.Lock(ctx, testKey(i), 0)
		origin.fill(testKey(i), f)
	}
	at := clk.Now().Add(time.Hour).UnixNano()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		entries := make([]logEntry, 1000)
		for j := range entries {
			entries[j] = logEntry{Purge: Purge{URLs: []string{"http://other.test/" + strconv.Itoa(j)}}, ID: strconv.Itoa(i) + "/" + strconv.Itoa(j), At: at}
		}
		if n, _ := c.applyLate(entries, 0); n != 0 {
			b.Fatalf("dropped %d", n)
		}
	}
	b.ReportMetric(float64(c.Stats().Local.Objects), "objects")
}
