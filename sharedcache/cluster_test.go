package sharedcache

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wiretest"
)

// TestOneFillForTheCluster: concurrent requests for one cold key, spread
// over three nodes, make exactly one origin fetch, and every request gets
// the whole body, while it is still streaming from the origin. The
// owner's answer and the fill waited for come within a minute: the
// test's 300 readers take their time on a loaded machine (a 5s lock
// wait once ran out and sent 100 requests to the origin), and the
// timeouts are not what it tests.
func TestOneFillForTheCluster(t *testing.T) {
	h := newHarness(t, Config{OwnerTimeout: time.Minute}, "a", "b", "c")
	h.lockWait = time.Minute
	h.origin.size = 256 << 10
	key := testKey(1)
	const clients = 300
	var wg sync.WaitGroup
	var mu sync.Mutex
	hows := map[string]int{}          // node and how it served, for a failure
	errs := make(chan error, clients) // one per client at most
	for i := range clients {
		n := h.nodes[[]string{"a", "b", "c"}[i%3]]
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, how, err := h.get(n, key)
			mu.Lock()
			hows[n.name+" "+how]++
			mu.Unlock()
			switch {
			case err != nil:
				errs <- err
			case !bytes.Equal(b, h.origin.body(key)):
				errs <- errors.New(n.name + " (" + how + "): wrong body")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := h.origin.fetches.Load(); got != 1 {
		t.Fatalf("origin fetched %d times, want 1; requests served: %v", got, hows)
	}
	owner := h.nodes[ownerOf(key, "a", "b", "c")]
	if st := owner.c.Stats(); st.Local.Objects != 1 || st.OriginFills > 1 {
		t.Fatalf("owner stats: %+v", st)
	}
}

// TestLockAfterAFillStored: a request that missed just before a fill of
// the key committed then asks for the lock. The owner gives it the stored
// object, not a second fill: the key's one origin fetch is made. (This
// window made TestOneFillForTheCluster fetch twice now and then: a peer's
// fill call looked up, the first fill stored, then the call locked.)
func TestLockAfterAFillStored(t *testing.T) {
	h := newHarness(t, Config{}, "a", "b", "c")
	key := testKey(5)
	owner := h.nodes[ownerOf(key, "a", "b", "c")]
	if _, how, err := h.get(owner, key); err != nil || how != "filled" {
		t.Fatalf("first request: %s %v", how, err)
	}
	// The second request's Lookup came before the fill stored: it locks.
	f, o, err := owner.c.Lock(requestCtx(key), key, time.Second)
	if f != nil {
		f.Abort(nil)
		t.Fatal("a second fill of a key whose fresh object is stored")
	}
	if o == nil {
		t.Fatalf("no object: %v", err)
	}
	if b, err := readObject(context.Background(), o); err != nil || !bytes.Equal(b, h.origin.body(key)) {
		t.Fatalf("stored object: %d bytes, %v", len(b), err)
	}
	if got := h.origin.fetches.Load(); got != 1 {
		t.Fatalf("origin fetched %d times, want 1", got)
	}
	// A later fill still happens once the object is stale.
	h.clk.Advance(2 * time.Minute)
	if f, _, err := owner.c.Lock(requestCtx(key), key, time.Second); f == nil {
		t.Fatalf("no fill for a stale object: %v", err)
	} else {
		f.Abort(nil)
	}
}

// TestRecheckLooksHere: the engine's second look once it holds a lock
// (cache.WithRecheck) is not counted as a lookup, and for another node's
// key looks only at the hot tier: no call to the owner.
func TestRecheckLooksHere(t *testing.T) {
	h := newHarness(t, Config{}, "a", "b", "c")
	key := testKey(7)
	owner := h.nodes[ownerOf(key, "a", "b", "c")]
	other := h.nonOwner(key)
	if _, how, err := h.get(owner, key); err != nil || how != "filled" {
		t.Fatalf("first request: %s %v", how, err)
	}
	ctx := cache.WithRecheck(requestCtx(key))
	before, calls := owner.c.Stats(), h.origin.fetches.Load()
	for name, s := range map[string]cache.Store{"shared": owner.c, "local": owner.c.Local()} {
		if o, err := s.Lookup(ctx, key); o == nil || err != nil {
			t.Fatalf("%s: the owner's recheck found nothing: %v", name, err)
		}
	}
	if o, _ := other.c.Lookup(ctx, key); o != nil {
		t.Fatal("a recheck of another node's key found an object without a hot copy")
	}
	after := owner.c.Stats()
	if !maps.Equal(after.Tiers, before.Tiers) || after.Lookups1m != before.Lookups1m || h.origin.fetches.Load() != calls {
		t.Fatalf("rechecks counted: %+v -> %+v", before.Tiers, after.Tiers)
	}
	if st := other.c.Stats(); st.Tiers["remote"] != (TierStats{}) || st.OwnerCalls != 0 {
		t.Fatalf("the non-owner's recheck asked the owner: %+v", st.Tiers)
	}
}

// TestHotCopy: a non-owner serves a key it fetched from the owner from its
// hot copy (no call) while the copy is fresh, then asks the owner again.
func TestHotCopy(t *testing.T) {
	h := newHarness(t, Config{}, "a", "b", "c")
	key := testKey(2)
	owner := ownerOf(key, "a", "b", "c")
	other := h.nonOwner(key)
	for i := range 3 {
		if _, how, err := h.get(other, key); err != nil || (i > 0 && how != "lookup") {
			t.Fatalf("request %d: %s %v", i, how, err)
		}
	}
	waitFor(t, "the hot copy stored", func() bool { return other.c.Stats().Hot.Objects == 1 })
	before := h.nodes[owner].c.Stats().Tiers["local"]
	if _, how, err := h.get(other, key); err != nil || how != "lookup" {
		t.Fatalf("%s %v", how, err)
	}
	if st := other.c.Stats(); st.Tiers["hot"].Hits == 0 {
		t.Fatalf("no hot hit: %+v", st.Tiers)
	}
	if after := h.nodes[owner].c.Stats().Tiers["local"]; after != before {
		t.Fatalf("the owner was asked while a fresh hot copy existed: %+v -> %+v", before, after)
	}
	h.clk.Advance(2 * time.Minute) // both copies stale
	if _, _, err := h.get(other, key); err != nil {
		t.Fatal(err)
	}
	if got := h.origin.fetches.Load(); got != 2 {
		t.Fatalf("origin fetched %d times, want 2 (the first, then after the freshness)", got)
	}
	if o, _ := other.c.hot.Lookup(context.Background(), key); o == nil || !o.Meta().ResponseTime.After(h.clk.Now().Add(-time.Minute)) {
		t.Fatal("the stale hot copy was not replaced by the owner's new object")
	}
}

// TestOwnerPartitioned: when the owner cannot be reached the node fills
// from the origin itself within OwnerTimeout and marks the owner suspect,
// serving its keys locally (no more calls) until SuspectFor passes.
func TestOwnerPartitioned(t *testing.T) {
	h := newHarness(t, Config{OwnerTimeout: 200 * time.Millisecond, SuspectFor: time.Hour}, "a", "b", "c")
	key := testKey(3)
	owner := ownerOf(key, "a", "b", "c")
	other := h.nonOwner(key)
	h.faults.Partition([]string{owner}, []string{"a", "b", "c"}[:0])
	h.faults.Set(other.name, owner, wiretest.LinkFaults{Cut: true})
	h.faults.Set(owner, other.name, wiretest.LinkFaults{Cut: true})
	b, how, err := h.get(other, key)
	if err != nil || !bytes.Equal(b, h.origin.body(key)) || how != "filled" {
		t.Fatalf("with the owner partitioned: %s %v", how, err)
	}
	st := other.c.Stats()
	if st.CallErrors == 0 || st.Fallbacks == 0 {
		t.Fatalf("stats after the partition: %+v", st)
	}
	// Suspect: the next key of that owner goes straight to the origin
	// here, with no call.
	calls := st.Latency.Count()
	for i := 100; i < 200; i++ {
		k := testKey(i)
		if ownerOf(k, "a", "b", "c") != owner {
			continue
		}
		if _, how, err := h.get(other, k); err != nil || how != "filled" {
			t.Fatalf("suspect owner's key: %s %v", how, err)
		}
		break
	}
	if got := other.c.Stats().Latency.Count(); got != calls {
		t.Fatalf("%d calls to a suspect owner", got-calls)
	}
	h.faults.Heal()
}

// TestStreamCutMidBody: the connection to the owner breaks while it
// streams a body: the reader gets an error, never a short body ending
// cleanly, and the caller stores nothing.
func TestStreamCutMidBody(t *testing.T) {
	h := newHarness(t, Config{}, "a", "b", "c")
	h.origin.size = 512 << 10
	key := testKey(4)
	owner := ownerOf(key, "a", "b", "c")
	other := h.nonOwner(key)
	gate := make(chan struct{})
	h.origin.gate.Store(&gate)
	h.origin.half = make(chan string, 1) // the one gated fill
	type result struct {
		b   []byte
		how string
		err error
	}
	done := make(chan result, 1) // the one request
	go func() {
		b, how, err := h.get(other, key)
		done <- result{b, how, err}
	}()
	<-h.origin.half
	waitFor(t, "the body half-way at the caller", func() bool { return other.c.Stats().Tiers["remote"].Bytes > 0 })
	h.reset(other.name, owner)
	r := <-done
	h.origin.gate.Store(nil)
	close(gate)
	if r.err == nil || len(r.b) >= h.origin.size {
		t.Fatalf("a cut stream read as %d bytes, err %v (%s)", len(r.b), r.err, r.how)
	}
	if o, _ := other.c.hot.Lookup(context.Background(), key); o != nil {
		t.Fatal("the caller kept a partial object")
	}
	// The owner's own fill from the origin was not cut: it stores the
	// whole object, and the next request gets it whole.
	b, _, err := h.get(other, key)
	if err != nil || !bytes.Equal(b, h.origin.body(key)) {
		t.Fatalf("after the cut: %d bytes, %v", len(b), err)
	}
	if got := h.origin.fetches.Load(); got != 1 {
		t.Fatalf("origin fetched %d times, want 1", got)
	}
}

// TestNotOwnerOnRingDisagreement: a node whose ring says B owns a key
// calls B; B's ring gives the key to C, so B answers "not the owner" and
// the caller fills it itself, without calling C.
func TestNotOwnerOnRingDisagreement(t *testing.T) {
	h := newHarness(t, Config{}, "a", "b", "c")
	var key string
	for i := 0; ; i++ {
		key = testKey(1000 + i)
		if ownerOf(key, "a", "b") == "b" && ownerOf(key, "b", "c") == "c" {
			break
		}
	}
	h.nodes["a"].c.SetRing(newFakeRing("a", "a", "b"))
	h.nodes["b"].c.SetRing(newFakeRing("b", "b", "c"))
	b, how, err := h.get(h.nodes["a"], key)
	if err != nil || how != "filled" || !bytes.Equal(b, h.origin.body(key)) {
		t.Fatalf("%s %v", how, err)
	}
	if st := h.nodes["a"].c.Stats(); st.NotOwner == 0 || st.CallErrors != 0 {
		t.Fatalf("caller stats: %+v", st)
	}
	if st := h.nodes["b"].c.Stats(); st.Refused == 0 || st.OriginFills != 0 {
		t.Fatalf("b stats: %+v", st)
	}
	if st := h.nodes["c"].c.Stats(); st.Serving != 0 || st.OriginFills != 0 || st.Local.Objects != 0 {
		t.Fatalf("c was called: %+v", st)
	}
	if h.origin.fetches.Load() != 1 {
		t.Fatalf("origin fetched %d times", h.origin.fetches.Load())
	}
	// The object went to a's hot tier: the next request is a hit there.
	if _, how, _ := h.get(h.nodes["a"], key); how != "lookup" {
		t.Fatalf("second request: %s", how)
	}
}

// TestStaleConnNotSuspect: after the owner restarted (or a blip) the
// pooled connections to it are dead, and the first lookup and fill written
// on them fail. The wire client sends them again on new connections, so
// the owner still serves its keys: it is not made suspect, and the node
// does not fetch its keys from the origin itself.
func TestStaleConnNotSuspect(t *testing.T) {
	h := newHarness(t, Config{SuspectFor: time.Hour})
	var stale wiretest.StaleConns
	h.dialer = func(name string, d wire.Dialer) wire.Dialer {
		if name != "a" {
			return d
		}
		return stale.Wrap(d)
	}
	for _, n := range []string{"a", "b", "c"} {
		h.add(n)
	}
	h.setRing("a", "b", "c")
	a := h.nodes["a"]
	var keys []string // two keys b owns: one before, one after
	for i := 0; len(keys) < 2; i++ {
		if k := testKey(i); ownerOf(k, "a", "b", "c") == "b" {
			keys = append(keys, k)
		}
	}
	if _, how, err := h.get(a, keys[0]); err != nil || how != "waited" {
		t.Fatalf("first key: %s %v", how, err)
	}
	stale.Kill()
	b, how, err := h.get(a, keys[1])
	if err != nil || how != "waited" || !bytes.Equal(b, h.origin.body(keys[1])) {
		t.Fatalf("key of the owner after its connections died: %s %v", how, err)
	}
	st := a.c.Stats()
	if st.CallErrors != 0 || st.Fallbacks != 0 || a.c.suspect("b") {
		t.Fatalf("owner made suspect: call errors %d, fallbacks %d, suspect %v", st.CallErrors, st.Fallbacks, a.c.suspect("b"))
	}
	if got := h.origin.count(keys[1]); got != 1 {
		t.Fatalf("origin fetched the key %d times, want once (by its owner)", got)
	}
	if r := a.c.cfg.Client.Stats().Retries; r != 2 {
		t.Fatalf("client retries = %d, want 2 (the lookup and the fill)", r)
	}
}

// TestFillFailedReason: an owner whose fill stored nothing for a reason
// of the response says why in the head frame, and the node that asked
// gets cache.ErrFillFailed with that reason (its engine reports it and
// marks the key for hit-for-pass); a head without one (an owner of an
// older version) or with one that is not a short token reads as a plain
// failed fill.
func TestFillFailedReason(t *testing.T) {
	h := newHarness(t, Config{}, "a", "b", "c")
	key := testKey(7)
	owner := h.nodes[ownerOf(key, "a", "b", "c")]
	owner.c.cfg.Origin = OriginFunc(func(_ context.Context, f OriginFill) { f.Fill.Abort(&cache.NotStorable{Reason: "private"}) })
	other := h.nonOwner(key)
	_, _, err := other.c.Lock(requestCtx(key), key, time.Second)
	if !errors.Is(err, cache.ErrFillFailed) || cache.NotStorableReason(err) != "private" {
		t.Fatalf("Lock at a non-owner: %v, want a failed fill with reason private", err)
	}
	for _, hd := range []head{{Kind: kindFillFailed}, {Kind: kindFillFailed, Reason: "pri vate\r\n"}} {
		b, _ := msgpack.Marshal(&hd)
		var got head
		if err := msgpack.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if err := fillFailedErr(&got); err != cache.ErrFillFailed {
			t.Fatalf("head %+v: %v, want plain ErrFillFailed", hd, err)
		}
	}
}

// TestFillRefusedTooLarge: an owner whose fill refuses a head declaring
// more than MaxObjectBytes (Start's *NotStorable, passed on to Abort as
// the engine does) tells the node that asked: too_large, so that node
// reports it and marks the URL, not "stored".
func TestFillRefusedTooLarge(t *testing.T) {
	h := newHarness(t, Config{MaxBytes: 1 << 20, MaxObjectBytes: 1024}, "a", "b", "c")
	key := testKey(8)
	owner := h.nodes[ownerOf(key, "a", "b", "c")]
	owner.c.cfg.Origin = OriginFunc(func(_ context.Context, f OriginFill) {
		meta := &cache.Meta{Status: 200, Header: http.Header{"Content-Length": {"2048"}}}
		if err := f.Fill.Start(meta, 0); err != nil {
			f.Fill.Abort(err)
			return
		}
		f.Fill.Abort(nil)
	})
	other := h.nonOwner(key)
	_, _, err := other.c.Lock(requestCtx(key), key, time.Second)
	if !errors.Is(err, cache.ErrFillFailed) || cache.NotStorableReason(err) != "too_large" {
		t.Fatalf("Lock at a non-owner: %v, want a failed fill with reason too_large", err)
	}
}
