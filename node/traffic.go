package node

import (
	"math"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Traffic figures for the cluster page (issue 17): /status "traffic" is
// this node's requests per second, 5xx share, p99 latency, cache hit
// ratio and rate-limit refusals over the last few seconds, computed from
// the node's own Prometheus counters. Samples are taken when /status is
// asked (at most one a second), so a node nobody watches does no work
// and no goroutine runs for it.

// trafficWindow is how far back the figures reach: long enough to smooth
// one slow request, short enough that a chart refreshed every second or
// two moves with the traffic.
const trafficWindow = 5 * time.Second

// trafficSamples bounds the samples kept: the window at one a second,
// and slack.
const trafficSamples = 16

// TrafficStatus is a node's traffic over the last WindowSeconds.
type TrafficStatus struct {
	// WindowSeconds is the span the figures cover; 0 until a second
	// sample exists (the figures are then 0).
	WindowSeconds     float64 `json:"window_seconds"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	// ErrorRatio is the share of responses that were 5xx (0 to 1).
	ErrorRatio float64 `json:"error_ratio"`
	// P99Seconds is the 99th percentile of request durations,
	// interpolated within its histogram bucket; 0 without requests.
	P99Seconds float64 `json:"p99_seconds"`
	// CacheHitRatio is hits / (hits + misses) among the requests that
	// used the cache; absent when none did.
	CacheHitRatio *float64 `json:"cache_hit_ratio,omitempty"`
	// RateLimitedPerSecond counts requests refused by a rate limit.
	RateLimitedPerSecond float64 `json:"rate_limited_per_second"`
	// RequestsTotal counts every request since the node started.
	RequestsTotal uint64 `json:"requests_total"`
}

// trafficSample is the counters at one instant.
type trafficSample struct {
	at                      time.Time
	requests, errors        float64
	buckets                 []bucket // cumulative, by upper bound
	cacheHits, cacheLookups float64
	limited                 float64
}

// bucket is one cumulative histogram bucket.
type bucket struct {
	upper float64
	count float64
}

// trafficMeter samples the registry and keeps the recent samples.
type trafficMeter struct {
	gather func() ([]*dto.MetricFamily, error)
	now    func() time.Time

	mu      sync.Mutex
	samples []trafficSample // oldest first
}

// status samples when the newest sample is a second old or more, and
// returns the figures over the window.
func (m *trafficMeter) status() *TrafficStatus {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.samples); n == 0 || now.Sub(m.samples[n-1].at) >= time.Second {
		if mf, err := m.gather(); err == nil {
			s := sampleOf(mf)
			s.at = now
			m.samples = append(m.samples, s)
			if len(m.samples) > trafficSamples {
				m.samples = append(m.samples[:0], m.samples[len(m.samples)-trafficSamples:]...)
			}
		}
	}
	if len(m.samples) == 0 {
		return &TrafficStatus{}
	}
	newest := m.samples[len(m.samples)-1]
	from := newest
	for _, s := range m.samples[:len(m.samples)-1] {
		if newest.at.Sub(s.at) <= trafficWindow+time.Second/2 {
			from = s
			break
		}
	}
	st := trafficBetween(from, newest)
	return &st
}

// sampleOf reads the counters the figures come from.
func sampleOf(mfs []*dto.MetricFamily) trafficSample {
	var s trafficSample
	for _, mf := range mfs {
		switch mf.GetName() {
		case "pingora_requests_total":
			for _, m := range mf.GetMetric() {
				v := m.GetCounter().GetValue()
				s.requests += v
				if label(m, "code") == "5xx" {
					s.errors += v
				}
			}
		case "pingora_request_duration_seconds":
			s.buckets = sumBuckets(mf.GetMetric())
		case "pingora_cache_requests_total":
			for _, m := range mf.GetMetric() {
				switch label(m, "result") {
				case "hit", "stale", "collapsed":
					s.cacheHits += m.GetCounter().GetValue()
					s.cacheLookups += m.GetCounter().GetValue()
				case "miss", "revalidated":
					s.cacheLookups += m.GetCounter().GetValue()
				}
			}
		case "pingora_ratelimit_decisions_total":
			for _, m := range mf.GetMetric() {
				if label(m, "outcome") == "denied" {
					s.limited += m.GetCounter().GetValue()
				}
			}
		}
	}
	return s
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// sumBuckets adds the histograms of every route, bucket by bucket.
func sumBuckets(ms []*dto.Metric) []bucket {
	sum := map[float64]float64{}
	for _, m := range ms {
		h := m.GetHistogram()
		for _, b := range h.GetBucket() {
			sum[b.GetUpperBound()] += float64(b.GetCumulativeCount())
		}
		sum[math.Inf(1)] += float64(h.GetSampleCount()) // client_golang sends no +Inf bucket
	}
	out := make([]bucket, 0, len(sum)+1)
	for u, c := range sum {
		out = append(out, bucket{u, c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].upper < out[j].upper })
	return out
}

// trafficBetween is the figures from sample a to the later sample b.
func trafficBetween(a, b trafficSample) TrafficStatus {
	st := TrafficStatus{RequestsTotal: uint64(b.requests)}
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return st
	}
	st.WindowSeconds = secs
	n := b.requests - a.requests
	st.RequestsPerSecond = n / secs
	st.RateLimitedPerSecond = (b.limited - a.limited) / secs
	if n > 0 {
		st.ErrorRatio = (b.errors - a.errors) / n
	}
	if lookups := b.cacheLookups - a.cacheLookups; lookups > 0 {
		r := (b.cacheHits - a.cacheHits) / lookups
		st.CacheHitRatio = &r
	}
	st.P99Seconds = quantile(0.99, deltaBuckets(a.buckets, b.buckets))
	return st
}

// deltaBuckets is b's counts less a's, bucket by bucket (a bucket a lacks
// counts from zero).
func deltaBuckets(a, b []bucket) []bucket {
	prev := make(map[float64]float64, len(a))
	for _, x := range a {
		prev[x.upper] = x.count
	}
	out := make([]bucket, len(b))
	for i, x := range b {
		out[i] = bucket{x.upper, x.count - prev[x.upper]}
	}
	return out
}

// quantile estimates the q quantile of cumulative buckets as Prometheus's
// histogram_quantile does: linear within the bucket it falls in; the
// largest finite bound when it falls in the +Inf bucket; 0 when empty.
func quantile(q float64, bs []bucket) float64 {
	if len(bs) == 0 {
		return 0
	}
	total := bs[len(bs)-1].count
	if total <= 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.upper, 1) {
				return lower
			}
			if b.count == below {
				return b.upper
			}
			return lower + (b.upper-lower)*(rank-below)/(b.count-below)
		}
		lower, below = b.upper, b.count
	}
	return lower
}
