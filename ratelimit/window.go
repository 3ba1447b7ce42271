package ratelimit

import (
	"math"
	"sync/atomic"
	"time"
)

// The counting math, as pure functions of the time they are given.

// slide counts events in two fixed windows of one period: curr is window
// idx, prev window idx−1. Its estimate of the events in the last period
// is prev·(1−f) + curr, f being the elapsed fraction of window idx.
type slide struct {
	idx, prev, curr int64
}

// roll moves the window forward to idx (never back).
func (w *slide) roll(idx int64) {
	switch {
	case idx <= w.idx:
		return
	case idx == w.idx+1:
		w.prev, w.curr = w.curr, 0
	default:
		w.prev, w.curr = 0, 0
	}
	w.idx = idx
}

// count is the estimate at fraction f of window w.idx.
func (w *slide) count(f float64) float64 {
	return float64(w.prev)*(1-f) + float64(w.curr)
}

// maxMerge raises w to at least o, window by window, after aligning
// both to the later window: the merge of two lower bounds of one count.
func (w *slide) maxMerge(o slide) {
	if o.idx > w.idx {
		w.roll(o.idx)
	} else {
		o.roll(w.idx)
	}
	w.prev, w.curr = max(w.prev, o.prev), max(w.curr, o.curr)
}

// add adds o's counts to w after aligning both to the later window.
func (w *slide) add(o slide) {
	if o.idx > w.idx {
		w.roll(o.idx)
	} else {
		o.roll(w.idx)
	}
	w.prev += o.prev
	w.curr += o.curr
}

// windowAt returns the window index of wall time ns and the elapsed
// fraction of it, for windows of period p aligned to the Unix epoch, so
// that every node numbers windows alike.
func windowAt(ns int64, p time.Duration) (int64, float64) {
	idx := ns / int64(p)
	return idx, float64(ns-idx*int64(p)) / float64(p)
}

// slideRetry is how long until the estimate prev·(1−f)+curr falls to at
// most room, with windows of period p: within the window it falls by
// prev/p per unit of time; if curr alone exceeds room it waits for the
// next window, where curr becomes prev and decays in turn.
func slideRetry(prev, curr, f, room float64, p time.Duration) time.Duration {
	if room < 0 {
		room = 0
	}
	if curr > room {
		g := 1 - room/curr
		return time.Duration((1 - f + g) * float64(p))
	}
	if prev <= 0 {
		return 0
	}
	d := 1 - f - (room-curr)/prev
	if d <= 0 {
		return 0
	}
	return time.Duration(d * float64(p))
}

// bucket is a token bucket's level at time at (ns): tokens refill at rate
// per ns up to size.
type bucket struct {
	tokens float64
	at     int64
}

// level refills b to now and returns its tokens.
func (b *bucket) level(now int64, rate, size float64) float64 {
	if now > b.at {
		b.tokens = math.Min(size, b.tokens+float64(now-b.at)*rate)
		b.at = now
	}
	return b.tokens
}

// bucketRetry is how long until a bucket holding tokens has cost of them.
func bucketRetry(tokens, cost, rate float64) time.Duration {
	if tokens >= cost || rate <= 0 {
		return 0
	}
	return time.Duration(math.Ceil((cost - tokens) / rate))
}

// gcra is a token bucket kept as one theoretical arrival time (TAT, ns),
// updated with compare-and-swap so that deciding takes no lock. A request
// of cost c fits when TAT' = max(TAT, now) + c·interval stays within
// burst·interval of now.
type gcra struct {
	tat atomic.Int64
}

func newGCRA(string) *gcra { return new(gcra) }

// allow admits cost at now, or returns how long until it would fit.
func (g *gcra) allow(now, cost int64, interval float64, burst int64) (bool, time.Duration) {
	tol := int64(float64(burst) * interval)
	step := int64(float64(cost) * interval)
	for {
		tat := g.tat.Load()
		next := max(tat, now) + step
		if over := next - now - tol; over > 0 {
			return false, time.Duration(over)
		}
		if g.tat.CompareAndSwap(tat, next) {
			return true, 0
		}
	}
}

// left is how many tokens of burst the bucket holds at now.
func (g *gcra) left(now int64, interval float64, burst int64) int64 {
	used := float64(max(g.tat.Load()-now, 0)) / interval
	return max(burst-int64(math.Ceil(used)), 0)
}
