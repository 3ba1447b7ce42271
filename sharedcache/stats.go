package sharedcache

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// tier is where a lookup's object came from.
type tier int

const (
	tierLocal  tier = iota // this node's local tier (owned keys, unshared routes)
	tierHot                // a hot copy of another node's key
	tierRemote             // the owner, over wire
	tiers
)

var tierNames = [tiers]string{"local", "hot", "remote"}

// counters are the Cache's figures, updated with atomics.
type counters struct {
	ownerCalls   atomic.Int64 // calls to owners waiting for their first head
	serving      atomic.Int64 // lookup and fill streams served to peers
	fallbacks    atomic.Uint64
	notOwner     atomic.Uint64
	callErrors   atomic.Uint64
	suspected    atomic.Uint64
	handoffs     atomic.Uint64
	refused      atomic.Uint64
	ringMismatch atomic.Uint64
	heldAnyway   atomic.Uint64
	originFills  atomic.Uint64
	bytesRemote  atomic.Int64
	bytesToPeers atomic.Int64
	purges       atomic.Uint64
	purged       atomic.Uint64
	replayed     atomic.Uint64 // purges missed, applied from a member's log
	syncs        atomic.Uint64 // purge log exchanges: ok
	syncErrors   atomic.Uint64 // failed (retried)
	syncShort    atomic.Uint64 // ok, but the member's log did not reach back
	tiers        [tiers]struct {
		hits, misses atomic.Uint64
		bytes        atomic.Int64
	}
	latency histogram
	window  hitWindow
}

// countLookup records a lookup's outcome: a hit when it found a complete
// response (a Vary index is not counted: its variant's lookup is). It
// does not judge freshness, which would parse the stored Date on every
// lookup a second time: the engine's Cache-Status and
// pingora_cache_requests_total say what was served fresh.
func (c *Cache) countLookup(o cache.Object, t tier) {
	if o != nil && o.Meta().Variants != nil {
		return
	}
	ts := &c.st.tiers[t]
	hit := o != nil && o.Len() >= 0
	if hit {
		ts.hits.Add(1)
		if t != tierRemote { // remote bytes are counted as they stream
			ts.bytes.Add(o.Len())
		}
	} else {
		ts.misses.Add(1)
	}
	c.st.window.record(c.cfg.Clock.Now(), hit)
}

// TierStats are one tier's lookups.
type TierStats struct {
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
	// Bytes are the bodies of the objects found, as lookups returned
	// them (remote: as they streamed in).
	Bytes int64 `json:"bytes"`
}

// Stats are a Cache's figures, for /status, /metrics and "cache stats".
type Stats struct {
	// Local is the local tier: owned keys and unshared routes.
	Local Size `json:"local"`
	// Hot is the hot tier: copies of other nodes' keys.
	Hot Size `json:"hot"`
	// HitRatio is the share of lookups in the last minute that found a
	// complete stored response (Lookups1m of them; 0 when none).
	HitRatio  float64 `json:"hit_ratio_1m"`
	Lookups1m uint64  `json:"lookups_1m"`
	// OwnerCalls are calls to owners waiting for their answer now;
	// Serving the lookup and fill streams this node serves to peers.
	OwnerCalls int64 `json:"owner_calls_in_flight"`
	Serving    int64 `json:"serving_in_flight"`
	// Tiers counts lookups by the tier that answered.
	Tiers map[string]TierStats `json:"tiers"`
	// Fallbacks are fills done here because the owner could not be
	// asked; NotOwner the calls an owner refused (ring disagreement);
	// CallErrors the calls that failed (each made its owner suspect).
	Fallbacks  uint64 `json:"fallbacks"`
	NotOwner   uint64 `json:"not_owner"`
	CallErrors uint64 `json:"call_errors"`
	// Handoffs are objects copied from a previous owner after a ring
	// change; OriginFills the fills this node ran for peers.
	Handoffs    uint64 `json:"handoffs"`
	OriginFills uint64 `json:"origin_fills"`
	// Refused are peer calls answered "not the owner"; RingMismatch the
	// calls served from a peer whose ring differed; HeldAnyway the calls
	// for a key this node no longer owns answered from what it held.
	Refused      uint64 `json:"refused"`
	RingMismatch uint64 `json:"ring_mismatch"`
	HeldAnyway   uint64 `json:"held_anyway"`
	// BytesToPeers are body bytes sent to other nodes.
	BytesToPeers int64 `json:"bytes_to_peers"`
	// Purges run here and the objects they dropped.
	Purges uint64 `json:"purges"`
	Purged uint64 `json:"purged"`
	// PurgeLog is the purges this node remembers for members that come
	// back; PurgeLogFrom the horizon: it holds every purge applied here
	// since (zero: since the cache started).
	PurgeLog     int       `json:"purge_log"`
	PurgeLogFrom time.Time `json:"purge_log_from,omitzero"`
	// PurgesReplayed are purges this node missed and applied from a
	// returning member's log; PurgeSyncs the log exchanges with members
	// that came back (or that this node came back to), by result: ok and
	// error (retried) for those this node made, short for those, made or
	// answered, where the other side's log did not reach back to the gap
	// (every object requested before its horizon was dropped).
	PurgesReplayed uint64            `json:"purges_replayed"`
	PurgeSyncs     map[string]uint64 `json:"purge_syncs"`
	// Latency is the time to an owner's first answer.
	Latency Histogram `json:"owner_latency"`
	// RingVersion is the placement the cache uses (0: none, every key is
	// this node's); RingMembers its size.
	RingVersion uint64 `json:"ring_version"`
	RingMembers int    `json:"ring_members"`
}

// Size is what a tier holds.
type Size struct {
	Objects   int    `json:"objects"`
	Bytes     int64  `json:"bytes"`
	MaxBytes  int64  `json:"max_bytes"`
	Evictions uint64 `json:"evictions"`
}

func sizeOf(s cache.Stats, cap int64) Size {
	return Size{Objects: s.Objects, Bytes: s.Bytes, MaxBytes: cap, Evictions: s.Evictions}
}

// Stats returns the cache's figures now.
func (c *Cache) Stats() Stats {
	st := Stats{
		Local: sizeOf(c.local.Stats(), c.cfg.MaxBytes), Hot: sizeOf(c.hot.Stats(), max(c.cfg.HotBytes, 0)),
		OwnerCalls: c.st.ownerCalls.Load(), Serving: c.st.serving.Load(),
		Fallbacks: c.st.fallbacks.Load(), NotOwner: c.st.notOwner.Load(), CallErrors: c.st.callErrors.Load(),
		Handoffs: c.st.handoffs.Load(), OriginFills: c.st.originFills.Load(),
		Refused: c.st.refused.Load(), RingMismatch: c.st.ringMismatch.Load(), HeldAnyway: c.st.heldAnyway.Load(),
		BytesToPeers: c.st.bytesToPeers.Load(), Purges: c.st.purges.Load(), Purged: c.st.purged.Load(),
		Latency: c.st.latency.snapshot(), Tiers: make(map[string]TierStats, tiers),
		PurgesReplayed: c.st.replayed.Load(),
		PurgeSyncs:     map[string]uint64{"ok": c.st.syncs.Load(), "error": c.st.syncErrors.Load(), "short": c.st.syncShort.Load()},
	}
	var horizon int64
	st.PurgeLog, horizon = c.plog.size()
	if horizon > 0 {
		st.PurgeLogFrom = time.Unix(0, horizon).UTC()
	}
	for i := range tiers {
		t := &c.st.tiers[i]
		ts := TierStats{Hits: t.hits.Load(), Misses: t.misses.Load(), Bytes: t.bytes.Load()}
		if tier(i) == tierRemote {
			ts.Bytes = c.st.bytesRemote.Load()
		}
		st.Tiers[tierNames[i]] = ts
	}
	if r := c.ring(); r != nil {
		st.RingVersion, st.RingMembers = r.Version(), len(r.Members())
	}
	hits, total := c.st.window.sum(c.cfg.Clock.Now())
	st.Lookups1m = total
	if total > 0 {
		st.HitRatio = float64(hits) / float64(total)
	}
	return st
}

// serveStats answers a peer's stats call.
func (c *Cache) serveStats(context.Context, *struct{}) (*Stats, error) {
	st := c.Stats()
	return &st, nil
}

// LatencyBuckets are the upper bounds, in seconds, of the owner latency
// histogram.
var LatencyBuckets = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// histogram counts durations in LatencyBuckets.
type histogram struct {
	counts [len(LatencyBuckets) + 1]atomic.Uint64 // the last: above every bound
	sum    atomic.Int64                           // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(LatencyBuckets) && s > LatencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Histogram is a snapshot of a latency histogram: Counts[i] observations
// at most LatencyBuckets[i] and above the bound before (the last, above
// every bound); Sum in seconds.
type Histogram struct {
	Counts []uint64 `json:"counts"`
	Sum    float64  `json:"sum_seconds"`
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Counts: make([]uint64, len(h.counts)), Sum: time.Duration(h.sum.Load()).Seconds()}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	return out
}

// Count is the number of observations.
func (h Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// hitWindow counts lookups and hits over the last minute in 12 slots of
// 5 seconds, each tagged with its period so a stale slot is reset on use.
type hitWindow struct {
	slots [windowSlots]struct {
		period      atomic.Int64
		hits, total atomic.Uint64
	}
}

const (
	windowSlots = 12
	windowSlot  = 5 * time.Second
)

func (w *hitWindow) record(now time.Time, hit bool) {
	p := now.UnixNano() / int64(windowSlot)
	s := &w.slots[p%windowSlots]
	if old := s.period.Load(); old != p && s.period.CompareAndSwap(old, p) {
		s.hits.Store(0) // a count racing this reset may be lost: a status figure
		s.total.Store(0)
	}
	s.total.Add(1)
	if hit {
		s.hits.Add(1)
	}
}

func (w *hitWindow) sum(now time.Time) (hits, total uint64) {
	p := now.UnixNano() / int64(windowSlot)
	for i := range w.slots {
		s := &w.slots[i]
		if q := s.period.Load(); q > p-windowSlots && q <= p {
			hits += s.hits.Load()
			total += s.total.Load()
		}
	}
	return hits, total
}
