package sharedcache

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wiretest"
)

// fakeRing places keys by rendezvous hashing over fixed member names, as
// self sees them; every member's address is its name on the in-memory
// network.
type fakeRing struct {
	self    string
	members []string
	version uint64
}

func newFakeRing(self string, members ...string) *fakeRing {
	ms := slices.Sorted(slices.Values(members))
	h := fnv.New64a()
	for _, m := range ms {
		h.Write([]byte(m + "\n"))
	}
	return &fakeRing{self: self, members: ms, version: h.Sum64() | 1}
}

func (r *fakeRing) Owner(key string) (string, bool) {
	o := r.Owners(key, 1)
	if len(o) == 0 {
		return "", false
	}
	return o[0], o[0] == r.self
}

// Owners ranks members by a hash of member and key (rendezvous hashing):
// removing a member hands each of its keys to the next in that order.
func (r *fakeRing) Owners(key string, n int) []string {
	score := func(m string) uint64 {
		sum := sha256.Sum256([]byte(m + "\x00" + key))
		return binary.BigEndian.Uint64(sum[:8])
	}
	ms := slices.Clone(r.members)
	slices.SortFunc(ms, func(a, b string) int { return cmp.Compare(score(b), score(a)) })
	return ms[:min(n, len(ms))]
}

func (r *fakeRing) Members() []string     { return slices.Clone(r.members) }
func (r *fakeRing) Version() uint64       { return r.version }
func (r *fakeRing) Addr(id string) string { return id }

// testClock is real time (timers included) shifted by an offset the test
// advances, so freshness can pass without waiting.
type testClock struct {
	clock.Real
	offset atomic.Int64
}

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// fakeOrigin is the origin behind every node: bodies by key, a count of
// fetches, and an optional gate that holds a body half-way.
type fakeOrigin struct {
	clk     *testClock
	size    int
	fetches atomic.Int64
	byKey   sync.Map // key -> *atomic.Int64
	bodies  sync.Map // key#size -> []byte
	gate    atomic.Pointer[chan struct{}]
	half    chan string // receives the key when a gated body is half-way (if set)
	tags    string
}

func (o *fakeOrigin) body(key string) []byte {
	ck := key + "#" + strconv.Itoa(o.size)
	if b, ok := o.bodies.Load(ck); ok {
		return b.([]byte)
	}
	var b bytes.Buffer
	for i := 0; b.Len() < o.size; i++ {
		fmt.Fprintf(&b, "%s:%d;", key, i)
	}
	out := b.Bytes()[:o.size]
	o.bodies.Store(ck, out)
	return out
}

func (o *fakeOrigin) count(key string) int64 {
	v, _ := o.byKey.LoadOrStore(key, new(atomic.Int64))
	return v.(*atomic.Int64).Load()
}

// fill fetches key into f as the engine would: the head, the body in
// chunks (held half-way while a gate is set), then Commit. It returns the
// body it wrote.
func (o *fakeOrigin) fill(key string, f cache.Fill) []byte {
	o.fetches.Add(1)
	v, _ := o.byKey.LoadOrStore(key, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	body := o.body(key)
	now := o.clk.Now()
	h := http.Header{"Cache-Control": {"max-age=60"}, "Content-Length": {strconv.Itoa(len(body))}, "Date": {now.UTC().Format(http.TimeFormat)}}
	if o.tags != "" {
		h.Set("Surrogate-Key", o.tags)
	}
	if err := f.Start(&cache.Meta{Status: 200, Header: h, RequestTime: now, ResponseTime: now, Fresh: time.Minute}, 0); err != nil {
		f.Abort(err)
		return body
	}
	for i := 0; i < len(body); i += 16 << 10 {
		if i >= len(body)/2 {
			if g := o.gate.Load(); g != nil {
				if o.half != nil {
					o.half <- key
				}
				<-*g
			}
		}
		f.Write(body[i:min(i+16<<10, len(body))])
	}
	f.Commit()
	return body
}

// testNode is one node: its Cache, wire server and client.
type testNode struct {
	name string
	c    *Cache
	srv  *wire.Server
}

// harness is a cluster of testNodes on an in-memory network behind a
// fault injector, with one origin.
type harness struct {
	t      *testing.T
	nw     *wiretest.Network
	faults *wiretest.Faults
	origin *fakeOrigin
	clk    *testClock
	nodes  map[string]*testNode
	cfg    Config
	// dialer, if set, wraps the dialer of each node added after.
	dialer func(name string, d wire.Dialer) wire.Dialer
	// lockWait is how long get waits for another request's fill
	// (default 5s).
	lockWait time.Duration
}

func newHarness(t *testing.T, cfg Config, names ...string) *harness {
	t.Helper()
	clk := &testClock{}
	h := &harness{t: t, nw: wiretest.New(), faults: wiretest.NewFaults(wiretest.FaultsConfig{}), clk: clk,
		origin: &fakeOrigin{clk: clk, size: 100 << 10}, nodes: map[string]*testNode{}, cfg: cfg}
	t.Cleanup(func() { h.faults.Close() })
	for _, n := range names {
		h.add(n)
	}
	h.setRing(names...)
	return h
}

// add starts node name (on no ring until setRing).
func (h *harness) add(name string) *testNode {
	t := h.t
	d := h.faults.Dialer(name, h.nw.Dialer())
	if h.dialer != nil {
		d = h.dialer(name, d)
	}
	cl, err := wire.NewClient(wire.ClientConfig{Dialer: d, MaxIdleStreamConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	cfg := h.cfg
	cfg.Name, cfg.Client, cfg.Clock = name, cl, h.clk
	cfg.Origin = OriginFunc(func(_ context.Context, f OriginFill) { h.origin.fill(f.VariantKey, f.Fill) })
	if cfg.OwnerTimeout == 0 {
		cfg.OwnerTimeout = 2 * time.Second
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := wire.NewServer(wire.ServerConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c.Serve(srv)
	l, err := h.nw.Listen(name)
	if err != nil {
		t.Fatal(err)
	}
	fl := h.faults.Listener(name, l)
	done := make(chan struct{})
	go func(srv *wire.Server, fl net.Listener) { defer close(done); _ = srv.Serve(fl) }(srv, fl)
	n := &testNode{name: name, c: c, srv: srv}
	h.nodes[name] = n
	t.Cleanup(func() { cl.Close(); srv.Close(); <-done; c.Close() })
	return n
}

// setRing gives every named node a ring of those nodes.
func (h *harness) setRing(members ...string) {
	for _, m := range members {
		h.nodes[m].c.SetRing(newFakeRing(m, members...))
	}
}

func testKey(i int) string { return "GET http://origin.test/k" + strconv.Itoa(i) }

// ownerOf returns the node owning key on ring members.
func ownerOf(key string, members ...string) string {
	id, _ := newFakeRing("", members...).Owner(key)
	return id
}

// get runs a request for key at node n the way the engine does: a fresh
// lookup is served; else Lock, and a fill is fetched from the origin
// here; a waiter reads the object; a failed wait goes to the origin
// uncached. It returns the body and how the request was served.
func (h *harness) get(n *testNode, key string) ([]byte, string, error) {
	ctx := requestCtx(key)
	if o, err := n.c.Lookup(ctx, key); err != nil {
		return nil, "", err
	} else if o != nil && cache.Check(o.Meta(), cache.ParseRequest(nil), h.clk.Now()).Use == cache.UseFresh {
		b, err := readObject(ctx, o)
		return b, "lookup", err
	}
	wait := h.lockWait
	if wait == 0 {
		wait = 5 * time.Second
	}
	f, o, err := n.c.Lock(ctx, key, wait)
	switch {
	case f != nil:
		return h.origin.fill(key, f), "filled", nil
	case o != nil:
		b, err := readObject(ctx, o)
		return b, "waited", err
	}
	h.origin.fetches.Add(1)
	return h.origin.body(key), "uncached: " + err.Error(), nil
}

// requestCtx carries the engine's request for key, as a store call's
// context does.
func requestCtx(key string) context.Context {
	path := strings.TrimPrefix(key, "GET http://origin.test")
	return cache.WithRequest(context.Background(), &cache.Request{Method: "GET", Scheme: "http", Host: "origin.test", URI: path, Header: http.Header{}})
}

func readObject(ctx context.Context, o cache.Object) ([]byte, error) {
	r, err := o.NewReader(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // sleep-ok: polling a condition with a deadline
	}
}

// reset breaks every connection between nodes a and b, as a reset
// would, and waits until a's client has seen its shared connection to b
// die and called b again, so that what the test sees next is the cut
// stream alone, not also a call on the dead connection (which the client
// sends again on a new one, counted in its Retries).
func (h *harness) reset(a, b string) {
	h.t.Helper()
	h.faults.Reset(a, b)
	cl := h.nodes[a].c.cfg.Client
	waitFor(h.t, a+"'s client to reconnect to "+b, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return cl.Call(ctx, b, methodStats, &struct{}{}, &Stats{}) == nil
	})
}

// nonOwner returns a node that does not own key on the full ring.
func (h *harness) nonOwner(key string) *testNode {
	names := slices.Sorted(maps.Keys(h.nodes))
	owner := ownerOf(key, names...)
	for _, n := range names {
		if n != owner {
			return h.nodes[n]
		}
	}
	return nil
}
