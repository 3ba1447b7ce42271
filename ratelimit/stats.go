package ratelimit

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"
)

// stats are the Limiter's own counters.
type stats struct {
	batches, lines       atomic.Uint64 // sync calls sent to other owners, and the key lines in them
	syncErrors           atomic.Uint64 // sync calls that failed
	fallbacks            atomic.Uint64 // keys that went to the local share (owner out of reach or refusing)
	malformed            atomic.Uint64 // bodies received that did not decode
	handoffs, handoffsIn atomic.Uint64 // counters handed to a new owner, and taken from an old one
	handoffErrors        atomic.Uint64
	latency              histogram
}

// LatencyBuckets are the upper bounds of the sync latency histogram.
var LatencyBuckets = [...]time.Duration{
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond,
}

// histogram counts observations into LatencyBuckets (and one more for
// anything slower).
type histogram struct {
	counts [len(LatencyBuckets) + 1]atomic.Uint64
	sum    atomic.Int64 // ns
}

func (h *histogram) observe(d time.Duration) {
	i, _ := slices.BinarySearch(LatencyBuckets[:], d)
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Stats is a snapshot of a Limiter's counters, for metrics.
type Stats struct {
	Rules []RuleStats
	// SyncBatches and SyncKeys count reports sent to other owners (calls,
	// and key lines in them); SyncErrors the calls that failed.
	SyncBatches, SyncKeys, SyncErrors uint64
	// Fallbacks counts keys that went to the local share because their
	// owner could not be reached or refused them.
	Fallbacks uint64
	// Malformed counts sync bodies received that did not decode.
	Malformed uint64
	// HandoffsOut and HandoffsIn count counters moved on ring changes;
	// HandoffErrors the hand-off calls that failed.
	HandoffsOut, HandoffsIn, HandoffErrors uint64
	// LatencyCounts[i] counts sync calls that took at most
	// LatencyBuckets[i] (the last, longer); LatencySum is their total.
	LatencyCounts [len(LatencyBuckets) + 1]uint64
	LatencySum    time.Duration
}

// RuleStats are one rule's decisions and keys.
type RuleStats struct {
	Name  string
	Scope Scope
	// Allowed, Denied and Delayed count decisions (a delayed request that
	// is then admitted or refused counts there too).
	Allowed, Denied, Delayed uint64
	// Fallback counts decisions of a global rule made by the local share
	// while the key's owner was out of reach.
	Fallback uint64
	// Untracked counts decisions for keys beyond MaxKeys.
	Untracked uint64
	// Keys is the number of keys this node tracks for the rule (entries of
	// a global rule, buckets of a local token bucket; 0 for a local
	// sliding window, which keeps a sketch instead); Owned the counters it
	// holds as their owner.
	Keys, Owned int
}

// Stats returns the counters.
func (l *Limiter) Stats() Stats {
	s := Stats{
		SyncBatches: l.st.batches.Load(), SyncKeys: l.st.lines.Load(), SyncErrors: l.st.syncErrors.Load(),
		Fallbacks: l.st.fallbacks.Load(), Malformed: l.st.malformed.Load(),
		HandoffsOut: l.st.handoffs.Load(), HandoffsIn: l.st.handoffsIn.Load(), HandoffErrors: l.st.handoffErrors.Load(),
		LatencySum: time.Duration(l.st.latency.sum.Load()),
	}
	for i := range s.LatencyCounts {
		s.LatencyCounts[i] = l.st.latency.counts[i].Load()
	}
	for _, st := range l.rules.Load().list {
		c := st.c
		rs := RuleStats{Name: st.rule.Name, Scope: st.rule.Scope, Allowed: c.allowed.Load(), Denied: c.denied.Load(),
			Delayed: c.delayed.Load(), Fallback: c.fallback.Load(), Untracked: c.untracked.Load()}
		rs.Keys, rs.Owned = c.keys()
		s.Rules = append(s.Rules, rs)
	}
	return s
}

func (c *counters) keys() (keys, owned int) {
	if c.entries != nil {
		return c.entries.len(), c.owned.len()
	}
	if c.buckets != nil {
		return c.buckets.len(), 0
	}
	return 0, 0
}

// Status is what /status and "pingora-node limits" show.
type Status struct {
	Rules []RuleStatus `json:"rules"`
}

// RuleStatus is one rule.
type RuleStatus struct {
	Name      string        `json:"name"`
	Scope     Scope         `json:"scope"`
	Algorithm Algorithm     `json:"algorithm"`
	Key       string        `json:"key"`
	Limit     int64         `json:"limit"`
	Period    time.Duration `json:"period"`
	Keys      int           `json:"keys_tracked"`
	Owned     int           `json:"keys_owned,omitempty"`
	Allowed   uint64        `json:"allowed"`
	Denied    uint64        `json:"denied"`
	Delayed   uint64        `json:"delayed,omitempty"`
	Fallback  uint64        `json:"fallback,omitempty"`
	// Top lists the busiest keys of a global rule this node uses, by the
	// global count in their owner's last answer.
	Top []KeyStatus `json:"top,omitempty"`
}

// KeyStatus is one key of a global rule as this node sees it.
type KeyStatus struct {
	Key string `json:"key"`
	// Count is the key's global count (requests in the last period, or
	// tokens spent from the bucket) in its owner's last answer.
	Count int64 `json:"global_count"`
	// Owner is the node that answered last.
	Owner string `json:"owner"`
	// Lease is what this node may still admit before its next answer.
	Lease int64 `json:"lease"`
	// Fallback is set while the owner is out of reach.
	Fallback bool `json:"fallback,omitempty"`
}

// Status returns every rule with up to top of its busiest keys.
func (l *Limiter) Status(top int) Status {
	var out Status
	s := l.Stats()
	for i, st := range l.rules.Load().list {
		r := st.rule
		rs := s.Rules[i]
		row := RuleStatus{Name: r.Name, Scope: r.Scope, Algorithm: r.Algorithm, Key: r.Key, Limit: r.Limit, Period: r.Period,
			Keys: rs.Keys, Owned: rs.Owned, Allowed: rs.Allowed, Denied: rs.Denied, Delayed: rs.Delayed, Fallback: rs.Fallback}
		if st.c.entries != nil && top > 0 {
			row.Top = topKeys(st.c.entries, top)
		}
		out.Rules = append(out.Rules, row)
	}
	return out
}

// topKeys returns the n keys with the largest global counts, keeping at
// most n candidates while it walks the table.
func topKeys(t *table[entry], n int) []KeyStatus {
	best := make([]KeyStatus, 0, n+1) // sorted, largest count first
	t.each(func(key string, e *entry) {
		c := e.count.Load()
		if len(best) == n && c <= best[n-1].Count {
			return
		}
		e.mu.Lock()
		owner := e.owner
		e.mu.Unlock()
		k := KeyStatus{Key: key, Count: c, Owner: owner, Lease: e.lease.Load(), Fallback: e.flags.Load()&flagFallback != 0}
		i, _ := slices.BinarySearchFunc(best, k, byCount)
		best = slices.Insert(best, i, k)
		if len(best) > n {
			best = best[:n]
		}
	})
	return best
}

// byCount orders keys by count, largest first, then by key.
func byCount(a, b KeyStatus) int {
	if c := cmp.Compare(b.Count, a.Count); c != 0 {
		return c
	}
	return cmp.Compare(a.Key, b.Key)
}
