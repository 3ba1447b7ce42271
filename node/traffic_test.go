package node

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestQuantile: the q quantile of cumulative buckets, interpolated as
// Prometheus's histogram_quantile does.
func TestQuantile(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	cases := []struct {
		name string
		bs   []bucket
		q    float64
		want float64
	}{
		{"empty", nil, 0.99, 0},
		{"no requests", []bucket{{0.1, 0}, {inf, 0}}, 0.99, 0},
		{"all in the first bucket", []bucket{{0.1, 100}, {1, 100}, {inf, 100}}, 0.99, 0.099},
		{"half way up the second", []bucket{{0.1, 50}, {1, 100}, {inf, 100}}, 0.75, 0.55},
		{"in +Inf: the last finite bound", []bucket{{0.1, 0}, {1, 10}, {inf, 100}}, 0.99, 1},
		{"median exactly at a bound", []bucket{{0.1, 50}, {1, 100}, {inf, 100}}, 0.5, 0.1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := quantile(tc.q, tc.bs); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

// TestTrafficMeter: figures come from the registry's counters between a
// sample and the one a window before it; samples are taken at most once
// a second, and none exist before the first ask.
func TestTrafficMeter(t *testing.T) {
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pingora_requests_total"}, []string{"route", "method", "code"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pingora_request_duration_seconds", Buckets: []float64{.01, .1, 1}}, []string{"route"})
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pingora_cache_requests_total"}, []string{"result"})
	limits := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pingora_ratelimit_decisions_total"}, []string{"rule", "outcome"})
	reg.MustRegister(reqs, dur, cache, limits)
	now := time.Unix(1000, 0)
	m := &trafficMeter{gather: reg.Gather, now: func() time.Time { return now }}
	if st := m.status(); st.WindowSeconds != 0 || st.RequestsPerSecond != 0 {
		t.Fatalf("one sample: %+v, want no window", st)
	}
	for i := range 100 {
		code := "2xx"
		if i%10 == 0 {
			code = "5xx"
		}
		reqs.WithLabelValues("r", "GET", code).Inc()
		dur.WithLabelValues("r").Observe(0.005)
	}
	cache.WithLabelValues("hit").Add(30)
	cache.WithLabelValues("miss").Add(10)
	cache.WithLabelValues("bypass").Add(50)
	limits.WithLabelValues("api", "denied").Add(8)
	limits.WithLabelValues("api", "allowed").Add(80)
	now = now.Add(500 * time.Millisecond)
	if st := m.status(); st.WindowSeconds != 0 {
		t.Fatalf("asked again within a second: %+v, want the first sample only", st)
	}
	now = now.Add(1500 * time.Millisecond)
	st := m.status()
	if st.WindowSeconds != 2 || st.RequestsPerSecond != 50 || st.ErrorRatio != 0.1 || st.RateLimitedPerSecond != 4 || st.RequestsTotal != 100 {
		t.Fatalf("figures %+v", st)
	}
	if st.CacheHitRatio == nil || *st.CacheHitRatio != 0.75 {
		t.Fatalf("cache hit ratio %v, want 0.75 (bypass not counted)", st.CacheHitRatio)
	}
	if st.P99Seconds <= 0 || st.P99Seconds > 0.01 {
		t.Fatalf("p99 %v, want within the first bucket", st.P99Seconds)
	}
	for range 20 { // the window slides: old samples drop out
		now = now.Add(time.Second)
		st = m.status()
	}
	if len(m.samples) != trafficSamples || st.RequestsPerSecond != 0 || st.WindowSeconds > trafficWindow.Seconds()+1 {
		t.Fatalf("after 20 idle seconds: %d samples, %+v", len(m.samples), st)
	}
}
