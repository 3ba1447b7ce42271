package ratelimit

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// entry is this node's state for one key of a global rule: the lease the
// owner granted, what was admitted and refused since the last report, and
// the owner's last answer. Decide touches only the atomics; the sync loop
// owns the rest (under mu, for Status).
type entry struct {
	lease  atomic.Int64 // tokens left in the lease
	exp    atomic.Int64 // mono ns: the lease may be spent before this
	used   atomic.Int64 // admitted from the lease since the last report
	extra  atomic.Int64 // admitted without a lease (local share) since the last report
	carry  atomic.Int64 // extra of a report that failed, sent in window carryW: counted again only in that window
	carryW atomic.Int64
	denied atomic.Int64 // refused since the last report
	last   atomic.Int64 // mono ns of the last request
	grant  atomic.Int64 // the last grant: a quarter of it left asks for a report
	count  atomic.Int64 // the global count in the owner's last answer
	since  atomic.Int64 // mono ns the counts to report began to accumulate
	flags  atomic.Uint32
	share  gcra // the local share: admissions without a lease

	key string    // as the table holds it
	ctr *counters // the rule's counters it belongs to

	mu       sync.Mutex
	owner    string // the node whose answer is in snap
	snap     snap   // the owner's counter in its last answer
	reported int64  // mono ns the last report was sent
}

// entry flags.
const (
	// flagFallback: the owner could not be reached (or refused the key);
	// the key is decided by the local share until an owner answers.
	flagFallback uint32 = 1 << iota
	// flagKnown: an owner has answered for the key. Until then (and
	// while the key is far from its limit) a node without a lease decides
	// by the local share; after, a busy key whose lease ran out waits for
	// the next answer instead.
	flagKnown
	// flagQueued: the entry is in the sync loop's queue for the next
	// report; a request sets it once per round, the loop clears it.
	flagQueued
	// flagRelease: the sweep found the lease unspent on a busy key
	// nobody asked for lately: the next report returns it.
	flagRelease
)

// takeLease spends cost from the lease if it holds that much.
func takeLease(lease *atomic.Int64, cost int64) (left int64, ok bool) {
	for {
		v := lease.Load()
		if v < cost {
			return v, false
		}
		if lease.CompareAndSwap(v, v-cost) {
			return v - cost, true
		}
	}
}

// shareOf is the local share of a rule on a ring of n nodes: the rate
// limit/n, as a GCRA interval (ns per token), with a burst of one sync
// interval's worth of it (at least 1). A node without a lease admits at
// most this, so n nodes without leases admit at most the limit.
func shareOf(st *ruleState, n int, syncEvery time.Duration) (interval float64, burst int64) {
	n = max(n, 1)
	interval = st.interval * float64(n)
	perSync := float64(st.rule.Limit) * float64(syncEvery) / (float64(n) * float64(st.rule.Period))
	return interval, max(int64(math.Ceil(perSync)), 1)
}

// decideGlobal decides from this node's view of a global key: a valid
// lease is spent without a lock. Without one, a busy key waits for the
// owner's next answer, and a new key, a quiet one, or one whose owner is
// out of reach is decided by the local share. Either way the request is
// reported to the owner by the sync loop, sooner when the lease runs low
// or a request was refused.
func (l *Limiter) decideGlobal(st *ruleState, key string, cost, now int64) verdict {
	e, created := st.c.entries.getOrCreate(key, func(k string) *entry { return &entry{key: k, ctr: st.c} })
	if e == nil { // MaxKeys reached: the local share over the sketch
		st.c.untracked.Add(1)
		return decideSketch(st, key, cost, now, math.Max(1, float64(st.rule.Limit)/float64(max(l.ring().Len(), 1))))
	}
	if created {
		e.since.Store(now)
	}
	e.last.Store(now)
	flags := e.flags.Load()
	fallback := flags&flagFallback != 0
	busy := 2*e.count.Load() >= st.rule.Limit
	if exp := e.exp.Load(); now < exp {
		if left, ok := takeLease(&e.lease, cost); ok {
			e.used.Add(cost)
			if busy && (left <= e.grant.Load()/4 || exp-now < int64(2*l.cfg.SyncInterval)) {
				l.queue(e, true) // running low, or about to end: ask for more now
			}
			return l.globalVerdict(st, e, true, cost)
		}
	}
	if !fallback && flags&flagKnown != 0 && busy {
		// A busy key whose lease is spent (or ended with the owner's
		// window): the next answer, within SyncInterval/5, brings more.
		e.denied.Add(cost)
		l.queue(e, true)
		return l.globalVerdict(st, e, false, cost)
	}
	interval, burst := shareOf(st, l.ring().Len(), l.cfg.SyncInterval)
	ok, retry := e.share.allow(now, cost, interval, burst)
	if fallback {
		st.c.fallback.Add(1)
	}
	l.queue(e, !ok)
	if ok {
		e.extra.Add(cost)
		return l.globalVerdict(st, e, true, cost)
	}
	e.denied.Add(cost)
	v := l.globalVerdict(st, e, false, cost)
	if fallback {
		// The owner is out of reach: the share decides until it answers.
		// Otherwise its answer, asked for now, brings a lease within a
		// sync round, and the share's next token (period·nodes/limit: 6 s
		// at 5 per 10 s on 3 nodes) sent clients away for far longer.
		v.retry = max(v.retry, retry)
	}
	return v
}

// queue puts e in the sync loop's queue for the next report, once per
// round; urgent (a refusal, a busy key's lease running low) asks for an
// early round, the rest waits for the next tick: the early rounds are for
// keys near their limit, so that quiet keys cost one report a round.
func (l *Limiter) queue(e *entry, urgent bool) {
	for {
		f := e.flags.Load()
		if f&flagQueued != 0 {
			return
		}
		if e.flags.CompareAndSwap(f, f|flagQueued) {
			break
		}
	}
	l.dirtyMu.Lock()
	l.dirty = append(l.dirty, e)
	l.dirtyMu.Unlock()
	if urgent {
		l.wake()
	} else {
		l.unquiet()
	}
}

// globalVerdict fills the RateLimit figures from the owner's last count
// and what this node admitted since; a refusal's retry comes from the
// owner's last counter state.
func (l *Limiter) globalVerdict(st *ruleState, e *entry, ok bool, cost int64) verdict {
	v := verdict{ok: ok}
	if ok && !st.rule.Fields { // nobody reads the figures
		return v
	}
	limit := st.rule.Limit
	v.remaining = max(limit-e.count.Load()-e.used.Load()-e.extra.Load(), 0)
	idx, f := windowAt(l.wall(), st.rule.Period)
	v.reset = time.Duration((1 - f) * float64(st.rule.Period))
	if ok {
		return v
	}
	e.mu.Lock()
	s := e.snap
	e.mu.Unlock()
	if st.rule.Algorithm == TokenBucket {
		rate := float64(limit) / float64(st.rule.Period)
		v.retry = bucketRetry(float64(s.a)/1000, float64(cost), rate)
	} else {
		w := slide{idx: s.at, prev: s.a, curr: s.b}
		w.roll(idx)
		v.retry = slideRetry(float64(w.prev), float64(w.curr), f, float64(limit-cost), st.rule.Period)
	}
	// A lease comes with the next answer at the soonest.
	v.retry = max(v.retry, l.cfg.SyncInterval/5)
	return v
}

// unquiet restarts the sync loop's ticker when it stopped for want of
// anything to do (see run); it never blocks, and costs an atomic load
// while the loop is ticking.
func (l *Limiter) unquiet() {
	if l.quiet.Load() && l.quiet.CompareAndSwap(true, false) {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// wake asks the sync loop for an early round; it never blocks.
func (l *Limiter) wake() {
	select {
	case l.poke <- struct{}{}:
	default:
	}
}
