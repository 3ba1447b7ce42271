package sharedcache

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestScaleOutAndBackHandsKeysOver: keys cached on three nodes stay out of
// the origin when two nodes join (a new owner asks the previous owner
// first) and when they leave again (the earlier owners still hold them).
func TestScaleOutAndBackHandsKeysOver(t *testing.T) {
	h := newHarness(t, Config{}, "a", "b", "c")
	h.origin.size = 1 << 10
	three, five := []string{"a", "b", "c"}, []string{"a", "b", "c", "d", "e"}
	const keys = 300
	for i := range keys {
		if _, _, err := h.get(h.nodes[three[i%3]], testKey(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.origin.fetches.Load(); got != keys {
		t.Fatalf("warm-up: %d origin fetches for %d keys", got, keys)
	}
	h.add("d")
	h.add("e")
	h.setRing(five...)
	moved := 0
	for i := range keys {
		if ownerOf(testKey(i), three...) != ownerOf(testKey(i), five...) {
			moved++
		}
		b, _, err := h.get(h.nodes[five[(i+1)%5]], testKey(i))
		if err != nil || !bytes.Equal(b, h.origin.body(testKey(i))) {
			t.Fatalf("key %d after scale-out: %v", i, err)
		}
	}
	if got := h.origin.fetches.Load(); got != keys {
		t.Fatalf("scale-out sent %d of %d moved keys to the origin", got-keys, moved)
	}
	var handoffs uint64
	for _, n := range []string{"d", "e"} {
		handoffs += h.nodes[n].c.Stats().Handoffs
	}
	if handoffs == 0 || moved == 0 {
		t.Fatalf("%d handoffs for %d moved keys", handoffs, moved)
	}
	h.setRing(three...)
	for i := range keys {
		if _, _, err := h.get(h.nodes[three[(i+2)%3]], testKey(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.origin.fetches.Load(); got != keys {
		t.Fatalf("scale-in sent %d keys to the origin", got-keys)
	}
	t.Logf("%d keys, %d moved on 3→5, %d handed over, 0 origin fetches after warm-up", keys, moved, handoffs)
}

// TestHandoffWindowEnds: once HandoffWindow passed, a new owner's miss
// goes to the origin without asking the previous owner.
func TestHandoffWindowEnds(t *testing.T) {
	h := newHarness(t, Config{HandoffWindow: time.Minute}, "a", "b")
	var key string
	for i := 0; ; i++ {
		if key = testKey(i); ownerOf(key, "a", "b") == "a" && ownerOf(key, "a", "b", "c") == "c" {
			break
		}
	}
	h.get(h.nodes["a"], key)
	h.add("c")
	h.setRing("a", "b", "c")
	h.clk.Advance(2 * time.Minute)
	h.get(h.nodes["c"], key)
	if got := h.origin.count(key); got != 2 {
		t.Fatalf("origin fetched %d times, want 2 (the window had ended)", got)
	}
}

// TestDrain: a draining owner answers new lookups and fills "not the
// owner" (the caller serves the key itself) but finishes the stream in
// flight, and Drain returns when it ended.
func TestDrain(t *testing.T) {
	h := newHarness(t, Config{}, "a", "b")
	h.origin.size = 256 << 10
	var key string
	for i := 0; ; i++ {
		if key = testKey(i); ownerOf(key, "a", "b") == "a" {
			break
		}
	}
	gate := make(chan struct{})
	h.origin.gate.Store(&gate)
	h.origin.half = make(chan string, 1) // the one gated fill
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1) // the one request in flight
	go func() {
		b, _, err := h.get(h.nodes["b"], key)
		done <- result{b, err}
	}()
	<-h.origin.half
	drained := make(chan error, 1) // Drain's one result
	go func() { drained <- h.nodes["a"].c.Drain(context.Background()) }()
	waitFor(t, "a draining", func() bool { return h.nodes["a"].c.draining.Load() })
	select {
	case err := <-drained:
		t.Fatalf("Drain returned with a stream in flight: %v", err)
	default:
	}
	// A new key of a's goes to the origin from b, without waiting.
	var other string
	for i := 500; ; i++ {
		if other = testKey(i); ownerOf(other, "a", "b") == "a" {
			break
		}
	}
	h.origin.gate.Store(nil)
	if _, how, err := h.get(h.nodes["b"], other); err != nil || how != "filled" {
		t.Fatalf("new key during the drain: %s %v", how, err)
	}
	close(gate)
	r := <-done
	if r.err != nil || !bytes.Equal(r.b, h.origin.body(key)) {
		t.Fatalf("the stream in flight: %d bytes, %v", len(r.b), r.err)
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.nodes["a"].c.Drain(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// TestLeavingOwnerServesWhatItHolds: a node whose ring no longer gives it
// a key it filled (it left the ring to stop, or a node joined) serves its
// own clients from the copy it holds while that is fresh. Before, it asked
// the new owner, whose ring (gossip lags) still named the leaving node and
// answered "not the owner"; the leaving node skips itself among the
// previous owners, so it fetched the key from the origin again, into a
// cache about to vanish (chaos/cache-transitions.sh, scenario C: a
// SIGTERM'd node's keep-alive clients).
func TestLeavingOwnerServesWhatItHolds(t *testing.T) {
	h := newHarness(t, Config{}, "a", "b", "c")
	h.origin.size = 1 << 10
	var key string
	for i := 0; ; i++ {
		if key = testKey(i); ownerOf(key, "a", "b", "c") == "c" {
			break
		}
	}
	if _, how, err := h.get(h.nodes["c"], key); err != nil || how != "filled" {
		t.Fatalf("c's own key: %s %v", how, err)
	}
	// c leaves the ring; a and b have not seen it go yet.
	h.nodes["c"].c.SetRing(newFakeRing("c", "a", "b"))
	b, how, err := h.get(h.nodes["c"], key)
	if err != nil || !bytes.Equal(b, h.origin.body(key)) {
		t.Fatalf("c after leaving: %s %v", how, err)
	}
	if got := h.origin.count(key); got != 1 {
		t.Fatalf("origin fetched the key %d times (served %s), want 1: c holds it", got, how)
	}
}
