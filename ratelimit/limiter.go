package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/ratelimit/estimator"
)

// Limiter decides requests against a set of rules. Rules are an immutable
// snapshot swapped by SetRules; each rule's counters live apart from the
// snapshot and survive a swap that keeps the rule's identity (name, key,
// algorithm, scope, period). Decide runs on the request path and never
// waits on the network; global rules are kept in step with their owners by
// a background loop (Start), and owners answer through Register.
type Limiter struct {
	cfg   Config
	clk   clock.Clock
	epoch time.Time // the origin of mono

	rules  atomic.Pointer[ruleSet]
	ruleMu sync.Mutex // serialises SetRules

	poke    chan struct{} // an early sync is wanted; one pending is enough
	kick    chan struct{} // work arrived while the sync loop was quiet
	quiet   atomic.Bool   // the sync loop's ticker is stopped (nothing held)
	dirtyMu sync.Mutex
	dirty   []*entry // entries with something to report (flagQueued)
	sync    syncState
	scratch sync.Pool // *scratch, for the sync handler
	keyBufs sync.Pool // *[maxKeyLen]byte, where Decide assembles template keys
	st      stats

	// handedOver: HandOver gave this process's counters to a successor,
	// which owns them from then on; this process, draining, grants no
	// more tokens (see HandOver).
	handedOver atomic.Bool
	// awaitUntil: wall ns until which a successor grants no tokens while
	// it waits for its predecessor's counters (AwaitPredecessor); 0 when
	// it does not wait.
	awaitUntil atomic.Int64

	runMu   sync.Mutex
	stop    chan struct{}
	done    chan struct{}
	started bool
	closed  bool
}

// ruleSet is one generation of rules, in the order they are applied.
type ruleSet struct {
	list   []*ruleState
	byName map[string]*ruleState
}

// ruleState is a compiled rule with its counters.
type ruleState struct {
	rule     Rule // defaults filled in
	key      Key
	match    matcher
	policy   string  // its RateLimit-Policy member
	interval float64 // ns per token: Period / Limit
	c        *counters
}

// counters are a rule's live state, kept across rule swaps.
type counters struct {
	id      string
	name    string
	scope   Scope
	sketch  *estimator.Rate // local sliding_window; for a global rule, keys past MaxKeys
	buckets *table[gcra]    // local token_bucket
	entries *table[entry]   // global: this node's view and leases, by key
	owned   *table[counter] // global: the counters this node owns, by key

	allowed, denied, delayed, fallback, untracked atomic.Uint64
}

// New returns a Limiter with no rules: every request is admitted.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	l := &Limiter{cfg: cfg, clk: cfg.Clock, poke: make(chan struct{}, 1), kick: make(chan struct{}, 1)}
	l.scratch.New = func() any { return new(scratch) }
	l.keyBufs.New = func() any { return new([maxKeyLen]byte) }
	l.epoch = l.clk.Now()
	l.rules.Store(&ruleSet{byName: map[string]*ruleState{}})
	return l, nil
}

// mono is the current time in ns since the Limiter was made, from the
// monotonic reading of Clock.
func (l *Limiter) mono() int64 { return int64(l.clk.Now().Sub(l.epoch)) }

// wall is the current wall-clock time in ns since the Unix epoch: owners
// number their windows by it, so that every node numbers them alike.
func (l *Limiter) wall() int64 { return l.clk.Now().UnixNano() }

// AwaitPredecessor makes a successor process (a graceful upgrade: the
// same node name, a new process) grant no tokens until the process it
// replaces has handed its counters over (HandOver, which sends even when
// it has none), or until wait has passed. The old process leased tokens
// that this one cannot know of before then: granting on top of them let a
// key admit every node's lease twice over in the upgrade's window
// (chaos/upgrade-limits.sh saw 1,117 in a second against a bound of
// 1,112). Meanwhile requests decide by the leases they hold, as they do
// once the old process has handed over: it errs on limiting, for a few
// milliseconds.
func (l *Limiter) AwaitPredecessor(wait time.Duration) {
	l.awaitUntil.Store(l.wall() + int64(wait))
}

// withholding reports whether this process grants no tokens at now: it
// handed its counters to a successor, or waits for its predecessor's.
func (l *Limiter) withholding(now int64) bool {
	if l.handedOver.Load() {
		return true
	}
	u := l.awaitUntil.Load()
	return u != 0 && now < u
}

// ring returns the current ring.
func (l *Limiter) ring() Ring {
	if l.cfg.Ring != nil {
		if r := l.cfg.Ring(); r != nil {
			return r
		}
	}
	return soloRing(l.cfg.Self)
}

// ErrDuplicateRule is returned by SetRules when two rules share a name.
var ErrDuplicateRule = errors.New("ratelimit: duplicate rule name")

// SetRules validates rules and swaps them in as one generation. A rule
// whose identity (name, key, algorithm, scope, period) is unchanged keeps
// its counters; the counters of rules that went away are dropped. On an
// error nothing changes.
func (l *Limiter) SetRules(rules []Rule) error {
	l.ruleMu.Lock()
	defer l.ruleMu.Unlock()
	old := l.rules.Load()
	if err := CheckRules(rules); err != nil {
		return err
	}
	next := &ruleSet{byName: make(map[string]*ruleState, len(rules))}
	for _, r := range rules {
		st, err := l.compile(r.withDefaults(), old)
		if err != nil {
			return err
		}
		next.list = append(next.list, st)
		next.byName[r.Name] = st
	}
	l.rules.Store(next)
	return nil
}

// CheckRules reports whether SetRules would take rules, with the error it
// would return; it changes nothing. node runs it on a cluster config
// before the config is replicated (issue 13).
func CheckRules(rules []Rule) error {
	seen := make(map[string]bool, len(rules))
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			return err
		}
		if seen[r.Name] {
			return fmt.Errorf("%w: %q", ErrDuplicateRule, r.Name)
		}
		seen[r.Name] = true
	}
	return nil
}

// compile builds a rule's state, reusing the counters of the rule of the
// same identity in old.
func (l *Limiter) compile(r Rule, old *ruleSet) (*ruleState, error) {
	k, err := ParseKey(r.Key)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: rule %q: Key: %w", r.Name, err)
	}
	st := &ruleState{rule: r, key: k, match: compileMatch(r.Match), policy: policyItem(r),
		interval: float64(r.Period) / float64(r.Limit)}
	if prev := old.byName[r.Name]; prev != nil && prev.c.id == r.identity() {
		st.c = prev.c
		return st, nil
	}
	c := &counters{id: r.identity(), name: r.Name, scope: r.Scope}
	switch {
	case r.Scope == Global:
		c.entries = newTable[entry](l.cfg.MaxKeys)
		c.owned = newTable[counter](l.cfg.MaxKeys)
		c.sketch, err = l.newSketch(r.Period)
	case r.Algorithm == TokenBucket:
		c.buckets = newTable[gcra](l.cfg.MaxKeys)
	default:
		c.sketch, err = l.newSketch(r.Period)
	}
	st.c = c
	return st, err
}

func (l *Limiter) newSketch(p time.Duration) (*estimator.Rate, error) {
	r, err := estimator.NewRate(estimator.RateConfig{Interval: p, Width: l.cfg.SketchWidth, Now: l.mono})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	return r, nil
}

// Active reports whether there is any rule: with none, every request is
// admitted and Decide need not be called.
func (l *Limiter) Active() bool { return len(l.rules.Load().list) > 0 }

// Rules returns the rules in force, defaults filled in.
func (l *Limiter) Rules() []Rule {
	rs := l.rules.Load()
	out := make([]Rule, len(rs.list))
	for i, st := range rs.list {
		out[i] = st.rule
	}
	return out
}

// Decision is the answer for one request.
type Decision struct {
	// Allow admits the request. When false and Wait > 0 the request is to
	// be held for Wait and decided again with Resume (on_exceed: delay);
	// when false and Wait is 0 it is rejected.
	Allow bool
	Wait  time.Duration
	// Resume is the rule to go on from after a Wait.
	Resume int
	// RetryAfter is when a rejected request may succeed, for Retry-After.
	RetryAfter time.Duration
	// Rule names the rule that rejected or delayed the request.
	Rule string
	// Policy and State are the RateLimit-Policy and RateLimit field values
	// (draft-ietf-httpapi-ratelimit-headers): the rejecting rule, and every
	// applied rule whose Fields is set; "" when none.
	Policy, State string
}

// verdict is one rule's answer.
type verdict struct {
	ok        bool
	remaining int64         // quota left, for the RateLimit field's r
	reset     time.Duration // the RateLimit field's t
	retry     time.Duration // for a refusal: when it may fit
}

// Decide applies the rules that match r, in order, from rule resume on;
// waited is how long the request has been held so far (by Wait). Counting
// stops at the first rule that refuses; the rules before it have counted
// the request.
func (l *Limiter) Decide(r *Request, resume int, waited time.Duration) Decision {
	rs := l.rules.Load()
	d := Decision{Allow: true}
	if resume >= len(rs.list) {
		return d
	}
	cost := max(r.Cost, 1)
	now := l.mono()
	var kb *[maxKeyLen]byte // a template key's buffer, from the pool on first use
	buf := func() *[maxKeyLen]byte {
		if kb == nil {
			kb = l.keyBufs.Get().(*[maxKeyLen]byte)
		}
		return kb
	}
	defer func() {
		if kb != nil {
			l.keyBufs.Put(kb)
		}
	}()
	var fields []byte
	for i := max(resume, 0); i < len(rs.list); i++ {
		st := rs.list[i]
		if !st.match.match(r) {
			continue
		}
		key, ok := st.key.build(r, buf)
		if !ok {
			continue
		}
		v := l.decideRule(st, key, cost, now)
		if v.ok && st.key.repeatable {
			v = l.decideAlternates(st, r, key, cost, now, v)
		}
		if v.ok {
			st.c.allowed.Add(1)
			if st.rule.Fields {
				d.Policy, fields = appendFields(d.Policy, fields, st, v)
			}
			continue
		}
		if st.rule.OnExceed == Delay && waited+v.retry <= st.rule.MaxDelay {
			if waited == 0 {
				st.c.delayed.Add(1)
			}
			return Decision{Wait: max(v.retry, time.Millisecond), Resume: i, Rule: st.rule.Name}
		}
		st.c.denied.Add(1)
		d.Allow, d.Rule, d.RetryAfter = false, st.rule.Name, v.retry
		d.Policy, fields = appendFields(d.Policy, fields, st, v)
		break
	}
	d.State = string(fields)
	return d
}

// decideAlternates counts r under the other keys it gives st's rule (a
// key parameter sent twice, or spelt two ways: Key.alternates), once the
// first admitted it: r is refused when any of them refuses it, and when
// it gives more than maxKeyValues. v is the first key's verdict.
func (l *Limiter) decideAlternates(st *ruleState, r *Request, first string, cost, now int64, v verdict) verdict {
	alts, over := st.key.alternates(r, first, nil)
	if over {
		return verdict{retry: st.rule.Period}
	}
	for _, k := range alts {
		if av := l.decideRule(st, k, cost, now); !av.ok {
			return av
		}
	}
	return v
}

func (l *Limiter) decideRule(st *ruleState, key string, cost, now int64) verdict {
	switch {
	case st.rule.Scope == Global:
		return l.decideGlobal(st, key, cost, now)
	case st.rule.Algorithm == TokenBucket:
		return l.decideBucket(st, key, cost, now)
	}
	return decideSketch(st, key, cost, now, float64(st.rule.Limit))
}

// decideSketch is a sliding window of limit over the rule's count-min
// sketch: constant memory whatever the number of keys.
func decideSketch(st *ruleState, key string, cost, now int64, limit float64) verdict {
	comp := st.c.sketch.ComponentsAt(key, now)
	est := comp.Sliding()
	reset := time.Duration((1 - comp.Fraction) * float64(st.rule.Period))
	if est+float64(cost) > limit {
		retry := slideRetry(float64(comp.Prev), float64(comp.Curr), comp.Fraction, limit-float64(cost), st.rule.Period)
		return verdict{remaining: 0, reset: reset, retry: retry}
	}
	st.c.sketch.ObserveAt(key, cost, now)
	return verdict{ok: true, remaining: int64(limit - est - float64(cost)), reset: reset}
}

// decideBucket is a local token bucket per key.
func (l *Limiter) decideBucket(st *ruleState, key string, cost, now int64) verdict {
	g, created := st.c.buckets.getOrCreate(key, newGCRA)
	if created {
		l.unquiet() // the sweep has a bucket to drop once it is full
	}
	if g == nil { // too many keys: a shared bucket for the overflow
		st.c.untracked.Add(1)
		g, _ = st.c.buckets.getOrCreate("", newGCRA)
		if g == nil {
			return verdict{retry: st.rule.Period}
		}
	}
	ok, retry := g.allow(now, cost, st.interval, st.rule.Burst)
	left := g.left(now, st.interval, st.rule.Burst)
	return verdict{ok: ok, remaining: left, reset: time.Duration(float64(st.rule.Burst-left) * st.interval), retry: retry}
}

// appendFields adds st's RateLimit-Policy member to policy and its
// RateLimit member ("name";r=REMAINING;t=SECONDS) to state.
func appendFields(policy string, state []byte, st *ruleState, v verdict) (string, []byte) {
	if policy != "" {
		policy += ", "
		state = append(state, ", "...)
	}
	state = strconv.AppendQuote(state, st.rule.Name)
	state = append(state, ";r="...)
	state = strconv.AppendInt(state, max(v.remaining, 0), 10)
	state = append(state, ";t="...)
	state = strconv.AppendInt(state, int64(math.Ceil(max(v.reset, 0).Seconds())), 10)
	return policy + st.policy, state
}

// RetryAfterSeconds renders d as a Retry-After value: whole seconds,
// rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(int64(math.Ceil(d.Seconds())), 1), 10)
}
