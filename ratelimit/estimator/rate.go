package estimator

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Clock returns the current time in nanoseconds from any fixed origin; it
// must not go backwards. Tests pass a fake; nil means a monotonic clock.
type Clock func() int64

// monotonic returns a Clock reading the monotonic clock relative to its
// creation. It is this package's only call of time.Now (STYLE.md habit 7:
// the documented default of an injected clock).
func monotonic() Clock {
	base := time.Now()
	return func() int64 { return int64(time.Since(base)) }
}

// RateConfig configures a Rate. A zero field means its default.
type RateConfig struct {
	// Interval is the length of one counting window (default 1s).
	Interval time.Duration
	// Depth is the number of rows of each window's sketch (default 3: the
	// failure probability δ = e^-3 ≈ 5 %; 4 rows give 1.8 % for about 4 ns
	// more per Observe).
	Depth int
	// Width is the number of counters per row of each window's sketch,
	// rounded up to a power of two (default 1024).
	Width int
	// Now is the time source (default: the monotonic clock).
	Now Clock
}

// Defaults of RateConfig, applied to zero fields.
const (
	DefaultInterval = time.Second
	DefaultDepth    = 3
	DefaultWidth    = 1024
)

// DefaultRateConfig returns the configuration whose fields are all defaults.
func DefaultRateConfig() RateConfig {
	return RateConfig{Interval: DefaultInterval, Depth: DefaultDepth, Width: DefaultWidth}
}

// Validate reports the first field that is out of range. Zero fields are
// valid (they take the default).
func (c RateConfig) Validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("estimator: Interval (%s) cannot be negative", c.Interval)
	case c.Interval != 0 && c.Interval < time.Millisecond:
		return fmt.Errorf("estimator: Interval (%s) must be at least 1ms", c.Interval)
	case c.Depth < 0 || c.Depth > maxDepth:
		return fmt.Errorf("estimator: Depth (%d) must be between 1 and %d", c.Depth, maxDepth)
	case c.Width < 0 || c.Width > 1<<30:
		return fmt.Errorf("estimator: Width (%d) must be between 1 and 2^30", c.Width)
	}
	return nil
}

func (c RateConfig) withDefaults() RateConfig {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Depth == 0 {
		c.Depth = DefaultDepth
	}
	if c.Width == 0 {
		c.Width = DefaultWidth
	}
	if c.Now == nil {
		c.Now = monotonic()
	}
	return c
}

// Rate counts events per key in fixed windows of Interval, aligned to the
// clock reading at NewRate, and keeps the previous window so that it can
// report the last complete window's rate and the proportional
// sliding-window estimate. Observe is lock-free except at a window
// boundary, where one caller clears the expired sketch under a mutex.
type Rate struct {
	interval int64 // ns
	now      Clock
	start    int64
	win      [2]Estimator // window k counts into win[k&1]; same seed, so one hash serves both
	cur      atomic.Int64 // the newest window whose sketch has been made ready
	mu       sync.Mutex   // serialises advance
}

// NewRate returns a Rate for cfg, or cfg's validation error.
func NewRate(cfg RateConfig) (*Rate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	seed := maphash.MakeSeed()
	return &Rate{
		interval: int64(cfg.Interval),
		now:      cfg.Now,
		start:    cfg.Now(),
		win:      [2]Estimator{*newWithSeed(seed, cfg.Depth, cfg.Width), *newWithSeed(seed, cfg.Depth, cfg.Width)},
	}, nil
}

// window returns the number of the window that contains now.
func (r *Rate) window(now int64) int64 {
	if now < r.start {
		return 0
	}
	return (now - r.start) / r.interval
}

// current returns the window to count an event at time now in: the window
// containing now, made current first if it is new. An event read with a
// clock that lags a concurrent flip counts in the newer window. The fast
// path (now inside the current window) needs no division.
func (r *Rate) current(now int64) int64 {
	c := r.cur.Load()
	if now-r.start < (c+1)*r.interval {
		return c
	}
	return r.advance(r.window(now))
}

// advance clears the sketch that window k reuses (it held window k-2) and,
// when more than one window passed, the other one too (it is then older
// than the previous window). Writers only write into a window's sketch
// after cur has reached that window, so no write is lost to the clear.
func (r *Rate) advance(k int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cur.Load()
	if c >= k {
		return c
	}
	r.win[k&1].Reset()
	if k-c >= 2 {
		r.win[(k-1)&1].Reset()
	}
	r.cur.Store(k)
	return k
}

// Observe adds n events for key to the current window and returns the
// window's count so far.
func (r *Rate) Observe(key string, n int64) int64 { return r.ObserveAt(key, n, r.now()) }

// ObserveAt is Observe at time now (a reading of the configured Clock),
// for a caller that already read the clock for this request.
func (r *Rate) ObserveAt(key string, n int64, now int64) int64 {
	h := r.win[0].hash(key)
	k := r.current(now)
	return r.win[k&1].incrHash(h, n)
}

// Components is what a rate is computed from at one instant.
type Components struct {
	Prev     int64         // events in the previous (complete) window
	Curr     int64         // events so far in the current window
	Interval time.Duration // window length
	Fraction float64       // elapsed part of the current window, in [0, 1)
}

// Components returns key's counts in the previous and current windows and
// how far the current window has gone.
func (r *Rate) Components(key string) Components { return r.ComponentsAt(key, r.now()) }

// ComponentsAt is Components at time now (a reading of the configured
// Clock).
func (r *Rate) ComponentsAt(key string, now int64) Components {
	h := r.win[0].hash(key)
	k := r.window(now)
	c := r.current(now)
	comp := Components{Interval: time.Duration(r.interval)}
	if c == k { // else a newer window began since now was read: report it empty
		comp.Fraction = float64(now-r.start-k*r.interval) / float64(r.interval)
		if comp.Fraction < 0 {
			comp.Fraction = 0
		}
	}
	comp.Curr = r.win[c&1].getHash(h)
	if c > 0 {
		comp.Prev = r.win[(c-1)&1].getHash(h)
	}
	return comp
}

// Rate returns key's events per second over the previous complete window
// (Pingora's Rate::rate): stable, but up to one window late.
func (r *Rate) Rate(key string) float64 {
	c := r.Components(key)
	return float64(c.Prev) / c.Interval.Seconds()
}

// Sliding returns the proportional estimate of key's events in the last
// Interval: Prev·(1−Fraction) + Curr, which assumes the previous window's
// events were spread evenly over it.
func (r *Rate) Sliding(key string) float64 {
	return r.Components(key).Sliding()
}

// Sliding is Prev·(1−Fraction) + Curr, the events in the last Interval.
func (c Components) Sliding() float64 {
	return float64(c.Prev)*(1-c.Fraction) + float64(c.Curr)
}
