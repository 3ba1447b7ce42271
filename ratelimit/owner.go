package ratelimit

import (
	"math"
	"sync"
	"time"
	"unsafe"
)

// snap is a counter's state as answers, hints and hand-offs carry it: for
// sliding_window at is the window index and a, b the counts of windows
// at−1 and at; for token_bucket at is the wall time (ns) and a the
// bucket's level in thousandths of a token.
type snap struct{ at, a, b int64 }

// counter is the authoritative count of one global key, held by its ring
// owner. Every token a node may spend was granted here and counted at
// once (in own for sliding_window, out of bkt for token_bucket), so the
// count never misses a leased request; what a lease leaves unspent comes
// back when the node returns it or the lease expires.
type counter struct {
	mu      sync.Mutex
	base    slide  // a lower bound learned from hints and hand-offs (the count before this owner)
	own     slide  // grants, and requests admitted without a lease, counted here
	bkt     bucket // token_bucket: the level, hints and hand-offs merged in
	bktSet  bool
	leases  []lease
	created int64 // wall ns
	touched int64 // wall ns of the last report or hand-off
}

// lease is what one node holds of a counter.
type lease struct {
	node string
	out  int64   // granted and not yet reported spent or returned
	exp  int64   // wall ns: refunded after this
	last int64   // wall ns of the node's last report
	rate float64 // the node's offered requests per ns (a moving average)
	// granted is what this lease was counted for in the current window
	// and the one before, so a refund never takes back more than was
	// counted in a window still in the estimate.
	granted slide
	// handed is the most any hand-off brought for this lease (its out
	// then): one that arrives again brings nothing new (see absorb).
	handed int64
}

// report is one key's line of a sync request: what a node did since its
// last report, and (hint) the counter state its last owner answered.
type report struct {
	rule, key                     string
	used, extra, denied, returned int64
	span                          int64 // ns the counts accumulated over
	hasHint                       bool
	hint                          snap
	limit                         int64 // the rule's limit: caps what a failed report carries over (not sent)
	win                           int64 // the rule's window (this node's wall clock) it was sent in (not sent)
}

// answer is an owner's line for a report.
type answer struct {
	status uint8
	grant  int64
	ttl    int64 // ns the grant may be spent for: to the end of the owner's window (sliding_window), or LeaseTerm
	count  int64
	snap   snap
}

// answer statuses.
const (
	statusOK       uint8 = iota
	statusNotOwner       // the ring of the owner asked says another node owns the key
	statusUnknown        // no global rule of that name here (configs differ for a moment)
	statusFull           // the owner tracks MaxKeys keys of the rule already
)

// serve answers reports from node from, in order. It runs in the sync
// handler, and in this node's own sync loop for the keys it owns.
func (l *Limiter) serve(from string, reps []report) []answer {
	return l.serveInto(make([]answer, len(reps)), from, reps)
}

// serveInto is serve writing into out, which has len(reps) elements.
func (l *Limiter) serveInto(out []answer, from string, reps []report) []answer {
	rs := l.rules.Load()
	ring := l.ring()
	n := ring.Len()
	now := l.wall()
	var kb []byte
	for i := range reps {
		r := &reps[i]
		st := rs.byName[r.rule]
		if st == nil || st.rule.Scope != Global {
			out[i].status = statusUnknown
			continue
		}
		kb = appendOwnerKey(kb[:0], r.rule, r.key)
		if o, self := ring.Owner(unsafe.String(unsafe.SliceData(kb), len(kb))); !self && o != "" {
			out[i].status = statusNotOwner
			continue
		}
		c, created := st.c.owned.getOrCreate(r.key, func(string) *counter { return &counter{created: now} })
		if created {
			l.unquiet() // a counter to hand off if the ring moves, and to sweep
		}
		if c == nil {
			out[i].status = statusFull
			continue
		}
		out[i] = c.report(st, from, r, now, l.cfg, n, l.withholding(now))
	}
	return out
}

// appendOwnerKey is the string a key is placed on the ring by: the rule's
// name, a zero byte, the key.
func appendOwnerKey(b []byte, rule, key string) []byte {
	b = append(b, rule...)
	b = append(b, 0)
	return append(b, key...)
}

// report applies one report from node and grants it what it may spend
// until its next report: its demand over two sync intervals (at least the
// local share's burst, at most two sync intervals at the full limit), out
// of what the counter has left, first come first served. A sliding-window
// grant may be spent only until the end of the owner's current window, so
// every leased request is counted in the window it is admitted in.
// hold (the counters went to a successor, see HandOver, or this successor
// waits for its predecessor's, see AwaitPredecessor) grants nothing: the
// report is still counted.
func (c *counter) report(st *ruleState, node string, r *report, now int64, cfg Config, n int, hold bool) answer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.touched = now
	idx, f := windowAt(now, st.rule.Period)
	c.roll(st, now, idx)
	c.expire(st, now, idx, node)
	if r.hasHint && now-c.created < int64(cfg.LeaseTerm) {
		c.merge(st, r.hint, now)
	}
	ls := c.leaseFor(node)
	// What the report says was spent came out of the lease, even if the
	// lease has expired since: apply it before refunding the rest.
	c.spend(st, ls, r, idx)
	if ls.exp != 0 && ls.exp < now {
		c.refund(st, ls, ls.out, idx)
		ls.out = 0
	}
	ls.observe(r, now, cfg.SyncInterval, st.rule.Period)
	windowLeft := (idx+1)*int64(st.rule.Period) - now
	want := leaseSize(st, ls.rate, n, cfg.SyncInterval, min(int64(cfg.LeaseTerm), windowLeft))
	var g int64
	if want > ls.out && !hold {
		// Grant what the window frees until the node's next early round
		// (T/5 ahead), so that what frees in the last round of a window
		// is not lost to it.
		ahead := min(f+float64(cfg.SyncInterval/5)/float64(st.rule.Period), 1)
		g = max(min(c.available(st, ahead), want-ls.out), 0)
		c.take(st, ls, g, idx)
	}
	ls.out += g
	// A sliding-window lease ends with the owner's window, so that what it
	// admits is counted in the window it is admitted in; on a quiet key
	// (at most half the limit counted, this grant included) it may run
	// for LeaseTerm instead, and roll counts its unspent tokens again in
	// every window it crosses. Quiet keys so cost a report per lease term,
	// not per window.
	ttl := int64(cfg.LeaseTerm)
	if st.rule.Algorithm != TokenBucket && 2*c.count(st, f) > float64(st.rule.Limit) {
		ttl = min(ttl, windowLeft)
	}
	ls.exp = now + ttl
	return answer{grant: g, ttl: ttl, count: int64(math.Round(c.count(st, f))), snap: c.snap(st, now)}
}

// leaseSize is what a node offering rate requests per ns should hold for
// a lease of ttl ns: its demand over two sync intervals (or what is left
// of ttl, so little goes unspent at the end of a window), at least the
// local share's burst (so a quiet key need not report every request) and
// at most two sync intervals of the whole limit (so a misjudged rate
// cannot lock up the count).
func leaseSize(st *ruleState, rate float64, n int, syncEvery time.Duration, ttl int64) int64 {
	_, lo := shareOf(st, n, syncEvery)
	hi := int64(math.Ceil(2 * float64(syncEvery) / st.interval))
	want := int64(math.Ceil(rate * float64(min(int64(2*syncEvery), ttl))))
	return max(min(want, hi), lo)
}

// advance moves the windows to idx, refills the bucket to now, and
// refunds and forgets the leases that expired.
func (c *counter) advance(st *ruleState, now, idx int64) {
	c.roll(st, now, idx)
	c.expire(st, now, idx, "")
}

// roll moves the windows to idx and refills the bucket to now. The
// unspent tokens of a lease that outlives a window are counted again in
// the new one (and refunded from it), so that no window misses a request
// a lease may still admit in it.
func (c *counter) roll(st *ruleState, now, idx int64) {
	if st.rule.Algorithm == TokenBucket {
		size := float64(st.rule.Burst)
		if !c.bktSet {
			c.bkt, c.bktSet = bucket{tokens: size, at: now}, true
		}
		c.bkt.level(now, 1/st.interval, size)
		return
	}
	if idx <= c.own.idx {
		return
	}
	c.base.roll(idx)
	c.own.roll(idx)
	start := idx * int64(st.rule.Period)
	for i := range c.leases {
		if ls := &c.leases[i]; ls.out > 0 && ls.exp > start {
			ls.granted.roll(idx)
			ls.granted.curr += ls.out
			c.own.curr += ls.out
		}
	}
}

// expire refunds and forgets the leases that expired, but for node's,
// whose report is being applied.
func (c *counter) expire(st *ruleState, now, idx int64, node string) {
	expired := false
	for i := range c.leases {
		ls := &c.leases[i]
		expired = expired || ls.node != node && ls.exp != 0 && ls.exp < now
	}
	if !expired { // the common case: leave the slice alone
		return
	}
	kept := c.leases[:0]
	for i := range c.leases {
		ls := &c.leases[i]
		if ls.node != node && ls.exp != 0 && ls.exp < now {
			c.refund(st, ls, ls.out, idx)
			continue
		}
		kept = append(kept, *ls)
	}
	clear(c.leases[len(kept):])
	c.leases = kept
}

func (c *counter) leaseFor(node string) *lease {
	for i := range c.leases {
		if c.leases[i].node == node {
			return &c.leases[i]
		}
	}
	c.leases = append(c.leases, lease{node: node})
	return &c.leases[len(c.leases)-1]
}

// spend applies what the node reports it admitted and returns: spent
// lease tokens were counted when granted; anything beyond the lease (and
// everything admitted without one) is counted now.
func (c *counter) spend(st *ruleState, ls *lease, r *report, idx int64) {
	used := r.used
	if used > ls.out {
		c.hits(st, used-ls.out)
		used = ls.out
	}
	ls.out -= used
	c.hits(st, r.extra)
	if r.returned > 0 {
		ret := min(r.returned, ls.out)
		ls.out -= ret
		c.refund(st, ls, ret, idx)
	}
}

// observe updates the node's offered rate (admitted and refused) from a
// report covering span ns.
func (ls *lease) observe(r *report, now int64, syncEvery, period time.Duration) {
	dt := math.Min(math.Max(float64(r.span), float64(syncEvery)/5), float64(period))
	inst := float64(max(r.used, 0)+max(r.extra, 0)+max(r.denied, 0)) / dt
	if ls.last == 0 {
		ls.rate = inst
	} else {
		ls.rate = (ls.rate + inst) / 2
	}
	ls.last = now
}

// hits counts n requests admitted outside a lease.
func (c *counter) hits(st *ruleState, n int64) {
	if n <= 0 {
		return
	}
	if st.rule.Algorithm == TokenBucket {
		c.bkt.tokens -= float64(n)
		return
	}
	c.own.curr += n
}

// available is how many tokens may be granted at fraction f of the
// current window (a token bucket: now).
func (c *counter) available(st *ruleState, f float64) int64 {
	if st.rule.Algorithm == TokenBucket {
		return int64(math.Floor(c.bkt.tokens))
	}
	return int64(math.Floor(float64(st.rule.Limit) - c.count(st, f)))
}

// count is the key's count: the sliding estimate of the requests in the
// last period, or the tokens missing from a full bucket.
func (c *counter) count(st *ruleState, f float64) float64 {
	if st.rule.Algorithm == TokenBucket {
		return float64(st.rule.Burst) - c.bkt.tokens
	}
	return c.base.count(f) + c.own.count(f)
}

// take grants g tokens to ls.
func (c *counter) take(st *ruleState, ls *lease, g, idx int64) {
	if st.rule.Algorithm == TokenBucket {
		c.bkt.tokens -= float64(g)
		return
	}
	c.own.curr += g
	ls.granted.roll(idx)
	ls.granted.curr += g
}

// refund gives back n unspent tokens of ls: to the bucket, or out of the
// windows the lease was granted in, newest first.
func (c *counter) refund(st *ruleState, ls *lease, n, idx int64) {
	if n <= 0 {
		return
	}
	if st.rule.Algorithm == TokenBucket {
		c.bkt.tokens = math.Min(float64(st.rule.Burst), c.bkt.tokens+float64(n))
		return
	}
	g := &ls.granted
	g.roll(idx)
	x := min(n, g.curr)
	g.curr -= x
	c.own.curr = max(c.own.curr-x, 0)
	y := min(n-x, g.prev)
	g.prev -= y
	c.own.prev = max(c.own.prev-y, 0)
}

// snap returns the counter's whole state for an answer or a hand-off.
func (c *counter) snap(st *ruleState, now int64) snap {
	if st.rule.Algorithm == TokenBucket {
		return snap{at: c.bkt.at, a: int64(c.bkt.tokens * 1000)}
	}
	w := c.base
	w.add(c.own)
	return snap{at: w.idx, a: w.prev, b: w.curr}
}

// merge raises the count to at least s, a state of this key from its
// previous owner (a hint, or a hand-off).
func (c *counter) merge(st *ruleState, s snap, now int64) {
	if st.rule.Algorithm == TokenBucket {
		rate, size := 1/st.interval, float64(st.rule.Burst)
		o := bucket{tokens: float64(s.a) / 1000, at: s.at}
		o.level(now, rate, size)
		c.bkt.tokens = math.Min(c.bkt.level(now, rate, size), o.tokens)
		return
	}
	c.base.maxMerge(slide{idx: s.at, prev: s.a, curr: s.b})
}

// idle reports whether the counter holds nothing worth keeping: no lease,
// no report for a while, and a count that has run out.
func (c *counter) idle(st *ruleState, now int64, keep time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now-c.touched < int64(keep) {
		return false
	}
	idx, f := windowAt(now, st.rule.Period)
	c.advance(st, now, idx)
	return len(c.leases) == 0 && c.count(st, f) < 0.5
}
