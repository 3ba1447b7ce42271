package estimator

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRateConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   RateConfig
		field string // "" means valid
	}{
		{"zero is defaults", RateConfig{}, ""},
		{"defaults", DefaultRateConfig(), ""},
		{"negative interval", RateConfig{Interval: -time.Second}, "Interval"},
		{"sub-millisecond interval", RateConfig{Interval: time.Microsecond}, "Interval"},
		{"negative depth", RateConfig{Depth: -1}, "Depth"},
		{"huge depth", RateConfig{Depth: 17}, "Depth"},
		{"negative width", RateConfig{Width: -1}, "Width"},
		{"huge width", RateConfig{Width: 1<<30 + 1}, "Width"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := NewRate(tc.cfg); err != nil {
					t.Fatalf("NewRate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
			if _, err := NewRate(tc.cfg); err == nil {
				t.Fatal("NewRate accepted an invalid config")
			}
		})
	}
}

// fakeClock is a Clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestRateWindows replays Pingora's rate tests (observe_rate and the
// proportional estimate) on a fake clock: each step advances time, then
// observes, then checks Observe's return, Rate, Sliding and Components.
func TestRateWindows(t *testing.T) {
	t.Parallel()
	type step struct {
		advance  time.Duration
		observe  int64 // 0: no observation
		wantObs  int64
		wantRate float64
		wantSlid float64
		wantPrev int64
		wantCurr int64
	}
	ms := time.Millisecond
	tests := []struct {
		name  string
		start time.Duration // clock reading at NewRate
		steps []step
	}{
		{"pingora observe_rate", 0, []step{
			{0, 3, 3, 0, 3, 0, 3},
			{0, 2, 5, 0, 5, 0, 5},
			{1000 * ms, 4, 4, 5, 9, 5, 4},
			{1000 * ms, 0, 0, 4, 4, 4, 0},
			{1000 * ms, 0, 0, 0, 0, 0, 0}, // nothing in the past two windows
		}},
		{"pingora proportional", 0, []step{
			{0, 5, 5, 0, 5, 0, 5},
			{500 * ms, 0, 0, 0, 5, 0, 5},
			{500 * ms, 4, 4, 5, 9, 5, 4},
			{750 * ms, 0, 0, 5, 5*0.25 + 4, 5, 4},
			{250 * ms, 0, 0, 4, 4, 4, 0},
			{500 * ms, 0, 0, 4, 2, 4, 0},
			{1000 * ms, 0, 0, 0, 0, 0, 0},
		}},
		{"windows align to the start, not to observations", 300 * ms, []step{
			{900 * ms, 10, 10, 0, 10, 0, 10},        // t=900ms since start: window 0
			{200 * ms, 6, 6, 10, 10*0.9 + 6, 10, 6}, // t=1100ms: window 1, f=0.1
		}},
		{"a long gap clears both windows", 0, []step{
			{0, 7, 7, 0, 7, 0, 7},
			{time.Hour, 1, 1, 0, 1, 0, 1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c fakeClock
			c.advance(tc.start)
			r, err := NewRate(RateConfig{Interval: time.Second, Width: 1 << 12, Now: c.now})
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.steps {
				c.advance(s.advance)
				if s.observe != 0 {
					if got := r.Observe("k", s.observe); got != s.wantObs {
						t.Errorf("step %d: Observe = %d, want %d", i, got, s.wantObs)
					}
				}
				if at := r.ComponentsAt("k", c.now()); at != r.Components("k") {
					t.Errorf("step %d: ComponentsAt(now) %+v != Components %+v", i, at, r.Components("k"))
				}
				comp := r.Components("k")
				if comp.Prev != s.wantPrev || comp.Curr != s.wantCurr {
					t.Errorf("step %d: prev %d curr %d, want %d %d", i, comp.Prev, comp.Curr, s.wantPrev, s.wantCurr)
				}
				if got := r.Rate("k"); !near(got, s.wantRate) {
					t.Errorf("step %d: Rate = %g, want %g", i, got, s.wantRate)
				}
				if got := r.Sliding("k"); !near(got, s.wantSlid) {
					t.Errorf("step %d: Sliding = %g, want %g", i, got, s.wantSlid)
				}
			}
		})
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestRateIntervalScales checks that Rate reports per second whatever the
// window length.
func TestRateIntervalScales(t *testing.T) {
	t.Parallel()
	var c fakeClock
	r, err := NewRate(RateConfig{Interval: 100 * time.Millisecond, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	r.ObserveAt("k", 20, c.now())
	r.Observe("k", 5)
	c.advance(100 * time.Millisecond)
	if got := r.Rate("k"); !near(got, 250) {
		t.Errorf("Rate = %g, want 250/s", got)
	}
}

// TestRateConcurrentFlip observes from several goroutines while another
// moves the clock across window boundaries; every event lands in some
// window and the sums never exceed what was observed.
func TestRateConcurrentFlip(t *testing.T) {
	t.Parallel()
	var c fakeClock
	r, err := NewRate(RateConfig{Interval: time.Second, Width: 1 << 12, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 20_000
	var wg sync.WaitGroup
	var stop atomic.Bool
	wg.Go(func() {
		for !stop.Load() {
			c.advance(100 * time.Millisecond)
			comp := r.Components("k")
			if comp.Prev+comp.Curr > workers*each {
				t.Errorf("prev %d + curr %d > %d observed", comp.Prev, comp.Curr, workers*each)
				return
			}
		}
	})
	var obs sync.WaitGroup
	for range workers {
		obs.Go(func() {
			for range each {
				r.Observe("k", 1)
			}
		})
	}
	obs.Wait()
	stop.Store(true)
	wg.Wait()
	// With the clock stopped, two more flips leave nothing behind.
	c.advance(2 * time.Second)
	if comp := r.Components("k"); comp.Prev != 0 || comp.Curr != 0 {
		t.Errorf("after two idle windows: %+v", comp)
	}
}

// TestDefaultClock checks that a Rate without Now counts on the monotonic
// clock (no assertion about time: within one window or across one, the
// two observations are both in prev+curr).
func TestDefaultClock(t *testing.T) {
	t.Parallel()
	r, err := NewRate(RateConfig{Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r.Observe("k", 1)
	r.Observe("k", 2)
	if c := r.Components("k"); c.Prev+c.Curr != 3 {
		t.Errorf("prev %d + curr %d, want 3", c.Prev, c.Curr)
	}
}
