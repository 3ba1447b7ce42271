package lb

import "math/bits"

// LeastConn picks the eligible backend with the fewest requests in flight
// relative to its weight: a beats b when a.InFlight/a.Weight <
// b.InFlight/b.Weight, compared by cross-multiplication so no division or
// float is involved. Ties are broken at random in proportion to weight,
// so an idle group (everything at zero) is shared by weight, not piled
// onto the first backend as a first-wins rule would.
//
// InFlight values are read once per pass without a lock; under concurrent
// updates a pick reflects a slightly stale view, which is inherent to
// least-connections balancing and harmless.
type LeastConn struct {
	backends []Backend
	rand     func() uint64
}

var _ Selector = (*LeastConn)(nil)

// NewLeastConn builds a LeastConn over backends (see New), breaking ties
// with opt.Rand.
func NewLeastConn(backends []Backend, opt Options) (*LeastConn, error) {
	bs, err := prepare(backends)
	if err != nil {
		return nil, err
	}
	return &LeastConn{backends: bs, rand: opt.rand()}, nil
}

// Select implements Selector.
func (l *LeastConn) Select(string) (int, bool) { return l.pick(filter{}) }

// SelectAny implements Selector.
func (l *LeastConn) SelectAny(string) (int, bool) { return l.pick(filter{any: true}) }

// SelectExcluding implements Selector.
func (l *LeastConn) SelectExcluding(_ string, tried Tried) (int, bool) {
	return l.pick(filter{tried: tried})
}

// pick makes one pass to find the least loaded backend and the total
// weight of all backends tied with it, then, only if there is a tie, a
// second pass to draw among the tied ones by weight. Two passes with one
// random number beat a weighted reservoir, which needs a random number per
// tie.
func (l *LeastConn) pick(f filter) (int, bool) {
	best, bestIn, tied := -1, int64(0), int64(0)
	for i := range l.backends {
		b := &l.backends[i]
		if !f.ok(i, b) {
			continue
		}
		in, w := b.State.InFlight.Load(), int64(b.Weight)
		if best < 0 {
			best, bestIn, tied = i, in, w
			continue
		}
		switch c := cmpLoad(in, w, bestIn, int64(l.backends[best].Weight)); {
		case c < 0:
			best, bestIn, tied = i, in, w
		case c == 0:
			tied += w
		}
	}
	if best < 0 || tied == int64(l.backends[best].Weight) {
		return best, best >= 0
	}
	r, _ := bits.Mul64(l.rand(), uint64(tied))
	bestW := int64(l.backends[best].Weight)
	for i := best; i < len(l.backends); i++ {
		b := &l.backends[i]
		w := int64(b.Weight)
		if !f.ok(i, b) || cmpLoad(b.State.InFlight.Load(), w, bestIn, bestW) != 0 {
			continue
		}
		if r < uint64(w) {
			return i, true
		}
		r -= uint64(w)
	}
	return best, true // loads moved between the passes
}

// cmpLoad compares aIn/aW with bIn/bW by cross-multiplication. Weights are
// at most MaxWeight, so the products cannot overflow for any realistic
// in-flight count (below 2^49).
func cmpLoad(aIn, aW, bIn, bW int64) int {
	x, y := aIn*bW, bIn*aW
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}
