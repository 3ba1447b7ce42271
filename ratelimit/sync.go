package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/pingora-go/pingora-go/wire"
)

// Wire methods served by Register.
const (
	MethodSync    = "ratelimit.sync"
	MethodHandoff = "ratelimit.handoff"
)

// syncState is the sync loop's own state.
type syncState struct {
	mu       sync.Mutex // one step at a time (Start's loop, or a test)
	lastStep int64      // mono ns
	lastRing Ring       // the ring handed off against
	pending  bool       // counters still to hand off (a new owner did not take them)
	lastTry  int64      // mono ns of the last hand-off attempt
	spare    []*entry   // the previous round's queue, for the next one
	lastGC   int64      // mono ns of the last sweep
}

// Register serves the sync and hand-off methods on srv.
func (l *Limiter) Register(srv *wire.Server) {
	srv.Handle(MethodSync, func(ctx context.Context, body []byte) ([]byte, error) {
		sc := l.scratch.Get().(*scratch)
		defer l.scratch.Put(sc)
		from, reps, err := decodeReportsInto(sc.reps, body)
		sc.reps = reps
		if err != nil {
			l.st.malformed.Add(1)
			return nil, err
		}
		sc.answers = slices.Grow(sc.answers[:0], len(reps))[:len(reps)]
		clear(sc.answers)
		return encodeAnswers(nil, l.serveInto(sc.answers, strings.Clone(from), reps)), nil
	})
	srv.Handle(MethodHandoff, func(ctx context.Context, body []byte) ([]byte, error) {
		from, hs, err := decodeHandoffs(body)
		if err != nil {
			l.st.malformed.Add(1)
			return nil, err
		}
		l.receiveHandoffs(from, hs)
		return []byte{codecVersion}, nil
	})
}

// scratch is the memory one sync call is decoded and answered in, reused
// across calls (Limiter.scratch).
type scratch struct {
	reps    []report
	answers []answer
}

// Start runs the sync loop until Close. It may be called once.
func (l *Limiter) Start() error {
	l.runMu.Lock()
	defer l.runMu.Unlock()
	if l.started || l.closed {
		return errors.New("ratelimit: Start called twice or after Close")
	}
	l.started = true
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go l.run()
	return nil
}

// Close stops the sync loop and waits for it. It may be called more than
// once. Decide keeps working on what the node holds.
func (l *Limiter) Close() error {
	l.runMu.Lock()
	started := l.started && !l.closed
	l.closed = true
	l.runMu.Unlock()
	if started {
		close(l.stop)
		<-l.done
	}
	return nil
}

// Drain hands every counter this node owns to the node that owns it once
// this one has left the ring, and waits for the answers (a graceful leave:
// the next owner takes the counts instead of rebuilding them from
// reports). Call it after the node stopped taking requests, before Close.
func (l *Limiter) Drain() {
	l.sync.mu.Lock()
	defer l.sync.mu.Unlock()
	l.handoffStep(l.rules.Load(), withoutSelf{r: l.ring(), self: l.cfg.Self})
}

// run is the sync loop: a step every SyncInterval, or sooner when a
// request asks (a lease running low, a refusal), but never two steps
// within SyncInterval/5.
//
// A step that finds the limiter holding nothing (no key, no counter, no
// report queued, no hand-off to retry) stops the ticker: an idle node
// does not wake 1/SyncInterval times a second for nothing. The first key
// or counter made after that starts it again (unquiet), so the first
// report goes at most SyncInterval later, as it would have with the
// ticker running; an urgent request pokes a step at once, as before.
// While anything is held the loop ticks exactly as it always has.
func (l *Limiter) run() {
	defer close(l.done)
	t := l.clk.NewTicker(l.cfg.SyncInterval)
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	minGap := int64(l.cfg.SyncInterval / 5)
	for {
		var tick <-chan time.Time
		if t != nil {
			tick = t.C()
		}
		select {
		case <-l.stop:
			return
		case <-l.kick:
			if t == nil {
				t = l.clk.NewTicker(l.cfg.SyncInterval)
			}
			continue
		case <-tick:
		case <-l.poke:
			if wait := l.sync.lastStep + minGap - l.mono(); wait > 0 {
				tm := l.clk.NewTimer(time.Duration(wait))
				select {
				case <-l.stop:
					tm.Stop()
					return
				case <-tm.C():
				}
			}
		}
		if l.step() {
			l.quiet.Store(false)
			if t == nil {
				t = l.clk.NewTicker(l.cfg.SyncInterval)
			}
			continue
		}
		// Nothing held: go quiet. quiet is set before holding is asked
		// again, and the paths that make state set it after making it
		// (unquiet), so one of the two sees the other.
		l.quiet.Store(true)
		if l.holding() {
			l.quiet.Store(false)
			continue
		}
		if t != nil {
			t.Stop()
			t = nil
		}
	}
}

// step is one round: hand off counters the ring moved away, report the
// keys that need it to their owners and apply the answers, and now and
// then drop idle keys. It reports whether the limiter still holds
// anything a later round has to look at (holding).
func (l *Limiter) step() bool {
	l.sync.mu.Lock()
	defer l.sync.mu.Unlock()
	now := l.mono()
	l.sync.lastStep = now
	ring := l.ring()
	rs := l.rules.Load()
	if ring != l.sync.lastRing || (l.sync.pending && now-l.sync.lastTry >= int64(time.Second)) {
		l.sync.lastRing, l.sync.lastTry = ring, now
		l.handoffStep(rs, ring)
	}
	batches := l.collect(rs, ring, now)
	l.send(batches)
	if now-l.sync.lastGC >= int64(time.Second) {
		l.sync.lastGC = now
		l.sweep(rs, now)
	}
	return l.sync.pending || l.holdingRules(rs)
}

// holding reports whether the limiter holds anything the sync loop must
// come back for: a report queued, a hand-off to retry, or any key or
// counter (to report, hand off or sweep).
func (l *Limiter) holding() bool {
	l.sync.mu.Lock()
	pending := l.sync.pending
	l.sync.mu.Unlock()
	return pending || l.holdingRules(l.rules.Load())
}

func (l *Limiter) holdingRules(rs *ruleSet) bool {
	l.dirtyMu.Lock()
	queued := len(l.dirty)
	l.dirtyMu.Unlock()
	if queued > 0 {
		return true
	}
	for _, st := range rs.list {
		c := st.c
		if (c.entries != nil && c.entries.len() > 0) || (c.owned != nil && c.owned.len() > 0) ||
			(c.buckets != nil && c.buckets.len() > 0) {
			return true
		}
	}
	return false
}

// batch is the reports for one owner, with the entries they came from.
type batch struct {
	owner   string
	self    bool
	reps    []report
	entries []*entry
	sent    int64 // mono ns
}

// collect takes the reports of the queued entries and groups them by
// owner. Only queued entries are looked at: a round costs what there is
// to report, not the number of keys.
func (l *Limiter) collect(rs *ruleSet, ring Ring, now int64) map[string]*batch {
	l.dirtyMu.Lock()
	queued := l.dirty
	l.dirty = l.sync.spare[:0]
	l.dirtyMu.Unlock()
	out := map[string]*batch{}
	var kb []byte
	wall := l.wall()
	for i, e := range queued {
		queued[i] = nil
		e.flags.And(^flagQueued) // a request from now on queues it again
		st := rs.byName[e.ctr.name]
		if st == nil || st.c != e.ctr { // the rule went away or changed meaning
			continue
		}
		win, _ := windowAt(wall, st.rule.Period)
		r, ok := take(e, win)
		if !ok {
			continue
		}
		kb = appendOwnerKey(kb[:0], st.rule.Name, e.key)
		owner, self := ring.Owner(unsafe.String(unsafe.SliceData(kb), len(kb)))
		if owner == "" {
			owner, self = l.cfg.Self, true
		}
		b := out[owner]
		if b == nil {
			b = &batch{owner: owner, self: self, sent: now}
			out[owner] = b
		}
		r.rule, r.key, r.limit, r.span, r.win = st.rule.Name, e.key, st.rule.Limit, now-e.since.Load(), win
		e.mu.Lock()
		if e.owner != "" && e.owner != owner {
			r.hasHint, r.hint = true, e.snap
		}
		e.reported = now
		e.mu.Unlock()
		b.reps = append(b.reps, r)
		b.entries = append(b.entries, e)
	}
	l.sync.spare = queued[:0]
	return out
}

// take takes what e has to report in window win: what it admitted (from
// its lease or without one) and refused since its last report, what a
// failed report of the same window admitted without a lease, and its
// lease when the sweep asked for it back.
//
// A failed report's extra from an earlier window is dropped: the owner
// counts what a report brings in its current window, and a node cut off
// for seconds on its local share had carried all it admitted (up to the
// limit) into the window of the heal, whose key then admitted 49 of
// 1,000 (TestPartitionHealSim; 822 and 875 in the two seconds after a
// real heal, chaos/scale-limits.sh). Those windows are over; what the
// partition admitted in them is the excess the README states.
func take(e *entry, win int64) (report, bool) {
	var r report
	if e.flags.Load()&flagRelease != 0 {
		e.flags.And(^flagRelease)
		r.returned = e.lease.Swap(0)
	}
	r.used, r.extra, r.denied = e.used.Swap(0), e.extra.Swap(0), e.denied.Swap(0)
	if c := e.carry.Swap(0); c > 0 && e.carryW.Load() == win {
		r.extra += c
	}
	return r, r.used != 0 || r.extra != 0 || r.denied != 0 || r.returned != 0
}

// send sends every batch, to remote owners at once, and applies the
// answers.
func (l *Limiter) send(batches map[string]*batch) {
	var wg sync.WaitGroup
	for _, b := range batches {
		if b.self {
			l.apply(b, l.serve(l.cfg.Self, b.reps), nil)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			as, err := l.call(b)
			l.apply(b, as, err)
		}()
	}
	wg.Wait()
}

// call sends one batch to its owner.
func (l *Limiter) call(b *batch) ([]answer, error) {
	l.st.batches.Add(1)
	l.st.lines.Add(uint64(len(b.reps)))
	if l.cfg.Client == nil || l.cfg.Peers == nil {
		return nil, fmt.Errorf("ratelimit: no client to reach %s", b.owner)
	}
	addr, ok := l.cfg.Peers.Addr(b.owner)
	if !ok {
		return nil, fmt.Errorf("ratelimit: no cluster address for %s", b.owner)
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.CallTimeout)
	defer cancel()
	if retrySafe(b.reps) {
		ctx = wire.WithIdempotent(ctx)
	}
	start := l.clk.Now()
	body, err := l.cfg.Client.CallRaw(ctx, addr, MethodSync, encodeReports(nil, l.cfg.Self, b.reps))
	if err != nil {
		return nil, err
	}
	l.st.latency.observe(l.clk.Now().Sub(start))
	return decodeAnswers(body, len(b.reps))
}

// retrySafe reports whether a sync may reach its owner twice, so that a
// report written on a pooled connection that died before any answer came
// back (the owner restarted, a blip) is sent again on a new connection
// rather than putting its keys in fallback (see wire.WithIdempotent).
//
// An owner that applies a report twice counts its extra (admitted without
// a lease) twice, takes its used tokens out of the lease twice (so refunds
// less when the lease ends), and counts the grant of the lost first answer
// until that lease ends: all of it counts high, so the key limits early
// for at most a lease term, the direction this package errs in already (a
// failed report carries its extra into the next one, counted twice when
// the owner had applied it). A returned lease applied twice refunds twice:
// that would count low and admit more than the limit, so a report with
// returned tokens is sent only once.
func retrySafe(reps []report) bool {
	for i := range reps {
		if reps[i].returned > 0 {
			return false
		}
	}
	return true
}

// apply hands each entry its answer: the grant joins the lease, valid for
// the answer's ttl counted from the time the report was sent (so it ends
// before the owner's record of it, whatever the trip took). On an error, or an answer that refuses the key,
// the entry falls back to the local share and what it admitted without a
// lease is kept for the next report.
func (l *Limiter) apply(b *batch, as []answer, err error) {
	if err != nil {
		l.st.syncErrors.Add(1)
		l.cfg.Logger.Debug("ratelimit: sync failed", "owner", b.owner, "keys", len(b.reps), "err", err)
	}
	term := int64(l.cfg.LeaseTerm)
	for i, e := range b.entries {
		if err != nil || as[i].status != statusOK {
			if e.flags.Load()&flagFallback == 0 {
				l.st.fallbacks.Add(1)
			}
			e.flags.Or(flagFallback)
			if c := b.reps[i].extra; c > 0 { // not counted by any owner yet
				e.carryW.Store(b.reps[i].win)
				e.carry.Store(min(c, b.reps[i].limit))
			}
			continue
		}
		a := as[i]
		if a.grant > 0 {
			e.lease.Add(a.grant)
			e.grant.Store(a.grant)
		}
		e.exp.Store(b.sent + min(term, a.ttl))
		e.since.Store(b.sent)
		e.count.Store(a.count)
		e.flags.And(^flagFallback)
		e.flags.Or(flagKnown)
		e.mu.Lock()
		e.owner, e.snap = b.owner, a.snap
		e.mu.Unlock()
	}
}
