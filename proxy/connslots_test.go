package proxy

import (
	"net/http"
	"testing"
	"time"
)

// TestPeerSlotsHandOff: a freed slot goes to the first waiter; a waiter
// that leaves after it was granted keeps the slot; a full queue refuses.
func TestPeerSlotsHandOff(t *testing.T) {
	t.Parallel()
	var cs connSlots
	ps, ok := cs.tryTake("k", 1)
	if !ok {
		t.Fatal("first take refused")
	}
	if _, ok := cs.tryTake("k", 1); ok {
		t.Fatal("second take over the cap of 1 succeeded")
	}
	_, w1, t1 := cs.enqueue("k", "g", 1, 2)
	_, w2, t2 := cs.enqueue("k", "g", 1, 2)
	if w1 == nil || w2 == nil || t1 || t2 {
		t.Fatalf("enqueue: %+v %v %+v %v", w1, t1, w2, t2)
	}
	if _, w, taken := cs.enqueue("k", "g", 1, 2); w != nil || taken {
		t.Fatal("third waiter admitted to a queue of 2")
	}
	ps.release()
	select {
	case <-w1.ready:
	default:
		t.Fatal("release did not hand the slot to the first waiter")
	}
	if !ps.leave(w1) {
		t.Fatal("a granted waiter lost its slot by leaving")
	}
	if ps.leave(w2) {
		t.Fatal("a waiting waiter left with a slot")
	}
	ps.release()
	if ps.active != 0 || len(ps.waiters) != 0 {
		t.Fatalf("active %d, waiters %d after all released", ps.active, len(ps.waiters))
	}
	if _, ok := cs.tryTake("k", 1); !ok {
		t.Fatal("take refused with nothing in use")
	}
}

// slotKeys returns the identities cs holds a count for.
func slotKeys(cs *connSlots) map[string]bool {
	out := map[string]bool{}
	cs.peers.Range(func(k, _ any) bool {
		out[k.(string)] = true
		return true
	})
	return out
}

// TestConnSlotsAcrossSwaps: a peer a swap drops keeps its count while a
// slot is in use, so a table naming it again counts that slot against the
// cap; a peer gone for good is forgotten when its last slot is freed, and
// at once when none is in use.
func TestConnSlotsAcrossSwaps(t *testing.T) {
	t.Parallel()
	var cs connSlots
	a := &Peer{Addr: "127.0.0.1:1", Group: "up", Conns: ConnLimit{Max: 1}}
	b := &Peer{Addr: "127.0.0.1:2", Group: "up", Conns: ConnLimit{Max: 1}}
	cs.retain([]*Peer{a, b})
	held, ok := cs.tryTake(a.poolKey(), 1)
	if !ok {
		t.Fatal("first take refused")
	}
	idle, _ := cs.tryTake(b.poolKey(), 1)
	idle.release()
	cs.retain([]*Peer{{Addr: "127.0.0.1:3", Group: "up"}}) // a and b dropped
	if got := slotKeys(&cs); !got[a.poolKey()] || got[b.poolKey()] {
		t.Fatalf("after the drop: counts for %v; want a's (in use), not b's (idle)", got)
	}
	again := &Peer{Addr: a.Addr, Group: "up", Conns: ConnLimit{Max: 1}} // a new table's copy
	cs.retain([]*Peer{again})
	if _, ok := cs.tryTake(again.poolKey(), 1); ok {
		t.Fatal("a peer dropped and named again was taken past its cap of 1 while its slot was in use")
	}
	cs.retain([]*Peer{b}) // a gone for good
	held.release()
	if got := slotKeys(&cs); got[a.poolKey()] {
		t.Fatalf("a's count kept after its last slot was freed: %v", got)
	}
	// A request of an old table that takes a slot of a peer no longer
	// live is counted, and forgotten when it ends.
	old, ok := cs.tryTake(a.poolKey(), 1)
	if !ok {
		t.Fatal("take refused on a forgotten peer")
	}
	if n := cs.active(a.poolKey()); n != 1 {
		t.Fatalf("%d in use, want 1", n)
	}
	old.release()
	if got := slotKeys(&cs); got[a.poolKey()] {
		t.Fatalf("a's count kept after the old table's request ended: %v", got)
	}
}

// TestConnSlotsStaleEntry: a request that looked up a peer's count just
// before forget dropped it takes a fresh one, never the dropped one, so
// the peer has one count.
func TestConnSlotsStaleEntry(t *testing.T) {
	t.Parallel()
	var cs connSlots
	p := &Peer{Addr: "127.0.0.1:1", Group: "up", Conns: ConnLimit{Max: 1}}
	key := p.poolKey()
	cs.retain(nil)
	stale := cs.of(key) // looked up, not taken yet
	cs.forget(stale)
	if !stale.gone {
		t.Fatal("an idle count of a peer not live was not dropped")
	}
	ps, ok := cs.tryTake(key, 1)
	if !ok || ps == stale {
		t.Fatalf("take: ok %v, on the dropped count %v", ok, ps == stale)
	}
	if _, ok := cs.tryTake(key, 1); ok {
		t.Fatal("a second take past the cap of 1")
	}
}

// TestConnSlotsRecap: a swap that raises a peer's cap lets its group's
// waiters in at once; a waiter of a group the new table does not have
// keeps its cap.
func TestConnSlotsRecap(t *testing.T) {
	t.Parallel()
	var cs connSlots
	p := &Peer{Addr: "127.0.0.1:1", Group: "up", Conns: ConnLimit{Max: 1}}
	key := p.poolKey()
	cs.retain([]*Peer{p})
	if _, ok := cs.tryTake(key, 1); !ok {
		t.Fatal("first take refused")
	}
	_, w, _ := cs.enqueue(key, "up", 1, 10)
	_, other, _ := cs.enqueue(key, "other", 1, 10)
	cs.retain([]*Peer{{Addr: p.Addr, Group: "up", Conns: ConnLimit{Max: 2}}})
	select {
	case <-w.ready:
	default:
		t.Fatal("the waiter was not let in by its group's raised cap")
	}
	if n := cs.active(key); n != 2 {
		t.Fatalf("%d in use, want 2", n)
	}
	cs.retain([]*Peer{{Addr: p.Addr, Group: "up"}}) // no cap now
	select {
	case <-other.ready:
		t.Fatal("a waiter of a group the table no longer has was let in past its cap")
	default:
	}
}

// TestMaxConnsHoldsAcrossSwaps: with max_conns 1, a config swap that drops
// the peer while its request is in flight and a second that brings it
// back do not let a second request in beside the first: it waits. Before,
// the count was forgotten at the first swap and the origin saw two at
// once. The count is forgotten once the peer is gone for good and its
// request has ended.
func TestMaxConnsHoldsAcrossSwaps(t *testing.T) {
	o := startHeldOrigin(t, "a", false)
	other := startHeldOrigin(t, "b", false)
	r := newTestRouter(t)
	swap := func(peers ...*Peer) {
		t.Helper()
		tbl, err := r.Build([]UpstreamConfig{{Name: "up", Peers: peers}}, []RouteConfig{{Host: "*", Upstream: "up"}}, "t")
		if err != nil {
			t.Fatal(err)
		}
		r.Swap(tbl)
	}
	capped := func() *Peer { // each config apply builds its own peers
		return &Peer{Addr: o.peer.Addr, Conns: ConnLimit{Max: 1, QueueTimeout: time.Minute}}
	}
	swap(capped())
	p := startProxy(t, RouterApp{Router: r}, Config{}, ListenerConfig{Name: "http"})
	c := h1Client()
	first := getAsync(c, "http://"+p.addr+"/hold")
	waitFor(t, 5*time.Second, "the first request at the origin", func() bool { return o.served.Load() == 1 })
	swap(&Peer{Addr: other.peer.Addr})
	swap(capped())
	second := getAsync(c, "http://"+p.addr+"/quick")
	key := o.peer.poolKey()
	waitFor(t, 5*time.Second, "the second request queued or served", func() bool {
		return o.served.Load() == 2 || queued(p.srv.slots, capped()) == 1
	})
	if n := o.served.Load(); n != 1 {
		t.Fatalf("origin saw %d requests at once past a cap of 1 kept across swaps", n)
	}
	swap(&Peer{Addr: other.peer.Addr}) // gone for good, its queue still served
	o.unblock()
	for i, ch := range []<-chan getResult{first, second} {
		if r := <-ch; r.err != nil || r.status != http.StatusOK || r.body != "a" {
			t.Fatalf("request %d: %d %q %v", i, r.status, r.body, r.err)
		}
	}
	waitFor(t, 5*time.Second, "the count of the peer gone forgotten", func() bool { return !slotKeys(p.srv.slots)[key] })
}
