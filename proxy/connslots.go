package proxy

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// connSlots holds the in-use count of every capped peer identity
// (Peer.poolKey). A count belongs to the identity, not to a table: a swap
// keeps it for the peers the new table names, and for a peer it drops
// until the requests still in flight to it have ended, so a table that
// names the peer again, while they run, counts them against its cap. A
// peer that is gone for good is forgotten when its last slot is freed
// (see forget).
type connSlots struct {
	peers   sync.Map                 // poolKey -> *peerSlots
	live    atomic.Pointer[peerKeys] // the live table's peers (nil: every peer is kept)
	waited  prometheus.Counter
	skipped prometheus.Counter
	refused prometheus.Counter
}

func newConnSlots(m *metrics) *connSlots {
	return &connSlots{
		waited:  m.maxConns.WithLabelValues("waited"),
		skipped: m.maxConns.WithLabelValues("failed_over"),
		refused: m.maxConns.WithLabelValues("refused"),
	}
}

// of returns the peerSlots of key, made when missing. It may be one that
// forget is dropping: lock takes only live ones.
func (cs *connSlots) of(key string) *peerSlots {
	if v, ok := cs.peers.Load(key); ok {
		return v.(*peerSlots)
	}
	v, _ := cs.peers.LoadOrStore(key, &peerSlots{cs: cs, key: key})
	return v.(*peerSlots)
}

// lock returns the peerSlots of key locked, one that is in cs.peers: an
// entry forget dropped meanwhile is passed over for a fresh one, which
// starts from zero rightly (the dropped one had nothing in use).
func (cs *connSlots) lock(key string) *peerSlots {
	for {
		ps := cs.of(key)
		ps.mu.Lock()
		if !ps.gone {
			return ps
		}
		ps.mu.Unlock()
		cs.peers.CompareAndDelete(key, ps)
	}
}

// tryTake takes a slot of key when fewer than max are in use and nobody
// waits; ps is key's peerSlots either way.
func (cs *connSlots) tryTake(key string, max int) (ps *peerSlots, ok bool) {
	ps = cs.lock(key)
	defer ps.mu.Unlock()
	return ps, ps.take(max)
}

// enqueue adds a waiter of group to key's queue unless queue are waiting
// already (w nil). A slot freed since tryTake is taken at once: then taken
// is true and no waiter is made.
func (cs *connSlots) enqueue(key, group string, max, queue int) (ps *peerSlots, w *slotWaiter, taken bool) {
	ps = cs.lock(key)
	defer ps.mu.Unlock()
	if ps.take(max) {
		return ps, nil, true
	}
	if len(ps.waiters) >= queue {
		return ps, nil, false
	}
	w = &slotWaiter{group: group, max: max, ready: make(chan struct{})}
	ps.waiters = append(ps.waiters, w)
	return ps, w, false
}

// retain makes live the table's peers: the counts of the others are
// forgotten once nothing is in use (now, or when their last slot is
// freed), and the waiters of the peers kept measure against their group's
// new cap, so a cap a swap raises admits them at once.
func (cs *connSlots) retain(live []*Peer) {
	keys := make(peerKeys, len(live))
	caps := make(map[groupPeer]int, len(live))
	for _, p := range live {
		k := p.poolKey()
		keys[k] = struct{}{}
		caps[groupPeer{p.Group, k}] = p.Conns.Max
	}
	cs.live.Store(&keys)
	cs.peers.Range(func(k, v any) bool {
		ps := v.(*peerSlots)
		if keys.has(k.(string)) {
			ps.recap(caps)
		} else {
			cs.forget(ps)
		}
		return true
	})
}

// groupPeer names a peer of a group by its identity.
type groupPeer struct{ group, key string }

// forget drops ps when nothing is in use and its peer is in no live table.
// Whoever holds ps (of) then finds it gone (lock) and takes a fresh one.
func (cs *connSlots) forget(ps *peerSlots) {
	if live := cs.live.Load(); live == nil || live.has(ps.key) {
		return
	}
	ps.mu.Lock()
	idle := ps.active == 0 && len(ps.waiters) == 0 && !ps.gone
	if idle {
		ps.gone = true
	}
	ps.mu.Unlock()
	if idle {
		cs.peers.CompareAndDelete(ps.key, ps)
	}
}

// active returns the connections in use to the peer identity key.
func (cs *connSlots) active(key string) int {
	v, ok := cs.peers.Load(key)
	if !ok {
		return 0
	}
	ps := v.(*peerSlots)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.active
}

// peerSlots counts one peer's connections in use and queues the requests
// waiting for one.
type peerSlots struct {
	cs  *connSlots // the owner, told when the count falls to zero (nil: none)
	key string

	mu      sync.Mutex
	active  int
	waiters []*slotWaiter // first come first served
	gone    bool          // forget dropped it from cs.peers: nothing takes a slot here
}

// slotWaiter is a request in a peer's queue; ready is closed when a slot
// is handed to it.
type slotWaiter struct {
	group   string // the group whose cap it measures against
	max     int    // guarded by peerSlots.mu (recap)
	ready   chan struct{}
	granted bool // guarded by peerSlots.mu
}

// take takes a slot when fewer than max are in use and nobody waits. The
// caller holds ps.mu.
func (ps *peerSlots) take(max int) bool {
	ok := ps.active < max && len(ps.waiters) == 0
	if ok {
		ps.active++
	}
	return ok
}

// leave takes w out of the queue; it reports whether w got a slot before
// it left, which the caller then holds.
func (ps *peerSlots) leave(w *slotWaiter) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if w.granted {
		return true
	}
	for i, x := range ps.waiters {
		if x == w {
			ps.waiters = append(ps.waiters[:i], ps.waiters[i+1:]...)
			break
		}
	}
	return false
}

// release frees a slot: the first waiter whose cap admits it takes it. The
// last slot of a peer no longer live forgets the peer.
func (ps *peerSlots) release() {
	if ps == nil {
		return
	}
	ps.mu.Lock()
	ps.active--
	ps.grant()
	idle := ps.active == 0
	ps.mu.Unlock()
	if idle && ps.cs != nil {
		ps.cs.forget(ps)
	}
}

// recap sets each waiter's cap to its group's in caps, where the group
// still names the peer (no cap: unbounded), and hands out the slots that
// admits.
func (ps *peerSlots) recap(caps map[groupPeer]int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, w := range ps.waiters {
		if m, ok := caps[groupPeer{w.group, ps.key}]; ok {
			if m <= 0 {
				m = math.MaxInt
			}
			w.max = m
		}
	}
	ps.grant()
}

// grant hands slots to the first waiters while their caps admit them. The
// caller holds ps.mu.
func (ps *peerSlots) grant() {
	for len(ps.waiters) > 0 && ps.active < ps.waiters[0].max {
		w := ps.waiters[0]
		ps.waiters[0] = nil
		ps.waiters = ps.waiters[1:]
		ps.active++
		w.granted = true
		close(w.ready)
	}
}
