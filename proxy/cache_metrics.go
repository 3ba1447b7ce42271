package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// Cache results, the values of pingora_cache_requests_total{result}.
const (
	cacheHit         = "hit"         // served fresh from the cache
	cacheStale       = "stale"       // served stale (max-stale, stale-while-revalidate, stale-if-error)
	cacheMiss        = "miss"        // forwarded: nothing usable was stored
	cacheRevalidated = "revalidated" // a stale response revalidated by a 304
	cacheCollapsed   = "collapsed"   // served from another request's fill (cache lock)
	cacheBypass      = "bypass"      // not eligible: method, Range, Upgrade, ...
)

var cacheResults = []string{cacheHit, cacheStale, cacheMiss, cacheRevalidated, cacheCollapsed, cacheBypass}

// cacheMetrics are the cache's collectors. Counters on the request path are
// resolved once.
type cacheMetrics struct {
	requests    *prometheus.CounterVec
	byResult    map[string]prometheus.Counter
	uncacheable *prometheus.CounterVec
	stored      prometheus.Counter
	lockWaits   *prometheus.CounterVec
	bytesServed prometheus.Counter
	invalidated prometheus.Counter
}

func newCacheMetrics() *cacheMetrics {
	m := &cacheMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_cache_requests_total",
			Help: "Requests on routes that cache, by what the cache did: hit, stale (served stale), miss, revalidated (a 304 refreshed a stale response), collapsed (served from another request's fill), bypass.",
		}, []string{"result"}),
		uncacheable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_cache_uncacheable_total",
			Help: "Responses the cache would have filled but did not store, by reason (no-store, private, status, too_large, ...; hit-for-pass: a recent response for the key could not be stored, so this one went to the origin without the lock).",
		}, []string{"reason"}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pingora_cache_stored_total",
			Help: "Responses stored whole in the cache.",
		}),
		lockWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_cache_lock_waits_total",
			Help: "Requests that found another request filling their key, by outcome: collapsed (served from that fill, or from what a fill stored between the request's lookup and its lock), timeout (went to the origin after the lock timeout), fill_failed (that fill stored nothing).",
		}, []string{"outcome"}),
		bytesServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pingora_cache_bytes_served_total",
			Help: "Response body bytes sent to clients from the cache.",
		}),
		invalidated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pingora_cache_invalidations_total",
			Help: "Keys invalidated by successful unsafe requests (RFC 9111 section 4.4).",
		}),
	}
	m.byResult = make(map[string]prometheus.Counter, len(cacheResults))
	for _, r := range cacheResults {
		m.byResult[r] = m.requests.WithLabelValues(r)
	}
	return m
}

func (m *cacheMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.uncacheable, m.stored, m.lockWaits, m.bytesServed, m.invalidated}
}

// storeCollectors export a store's own figures.
func storeCollectors(r cache.StatsReporter) []prometheus.Collector {
	stat := func(f func(cache.Stats) float64) func() float64 {
		return func() float64 { return f(r.Stats()) }
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pingora_cache_evictions_total",
			Help: "Objects the cache store dropped to make room.",
		}, stat(func(s cache.Stats) float64 { return float64(s.Evictions) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pingora_cache_objects",
			Help: "Objects held by the cache store.",
		}, stat(func(s cache.Stats) float64 { return float64(s.Objects) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pingora_cache_bytes",
			Help: "Bytes the objects of the cache store weigh (bodies, heads, keys).",
		}, stat(func(s cache.Stats) float64 { return float64(s.Bytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pingora_cache_max_bytes",
			Help: "The cache store's memory cap.",
		}, stat(func(s cache.Stats) float64 { return float64(s.MaxBytes) })),
	}
}
