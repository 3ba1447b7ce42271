package lb

import "math/bits"

// rejectTries is how many random draws a pick spends hoping to land on an
// eligible backend before it pays for an exact O(n) pass. With a quarter of
// the group down, 4 draws all miss 0.4% of the time.
const rejectTries = 4

// sampler maps uniform random values to backend indices in proportion to
// their weights. It is immutable.
type sampler struct {
	cum     []uint64 // cum[i] = weight[0] + ... + weight[i]
	total   uint64
	uniform uint64 // the common weight when all weights are equal, else 0
}

func newSampler(bs []Backend) sampler {
	s := sampler{cum: make([]uint64, len(bs)), uniform: uint64(bs[0].Weight)}
	for i, b := range bs {
		s.total += uint64(b.Weight)
		s.cum[i] = s.total
		if uint64(b.Weight) != s.uniform {
			s.uniform = 0
		}
	}
	return s
}

func (s *sampler) weight(i int) uint64 {
	if i == 0 {
		return s.cum[0]
	}
	return s.cum[i] - s.cum[i-1]
}

// at returns the backend whose weight range holds r, for r in [0, total).
func (s *sampler) at(r uint64) int {
	if s.uniform != 0 {
		return int(r / s.uniform)
	}
	lo, hi := 0, len(s.cum)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.cum[m] <= r {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// draw turns a uniform 64-bit value into an index chosen with probability
// weight/total. The multiply-high keeps the high bits of u, which are the
// well-mixed ones for both PRNG output and FNV hashes.
func (s *sampler) draw(u uint64) int {
	r, _ := bits.Mul64(u, s.total)
	return s.at(r)
}

// drawExcept is draw over every backend but skip. The group must have at
// least two backends.
func (s *sampler) drawExcept(u uint64, skip int) int {
	w := s.weight(skip)
	r, _ := bits.Mul64(u, s.total-w)
	if r >= s.cum[skip]-w {
		r += w // step over skip's range
	}
	return s.at(r)
}

// pick draws an eligible backend other than skip (-1 for none) in
// proportion to weight. Both the rejection draws and the exact fallback
// sample the eligible backends in proportion to weight, so the mix does too.
func (s *sampler) pick(bs []Backend, f *filter, skip int, rnd func() uint64) (int, bool) {
	if skip >= 0 && len(bs) < 2 {
		return -1, false
	}
	for range rejectTries {
		var i int
		if skip < 0 {
			i = s.draw(rnd())
		} else {
			i = s.drawExcept(rnd(), skip)
		}
		if f.ok(i, &bs[i]) {
			return i, true
		}
	}
	return drawEligible(bs, f, skip, rnd())
}

// drawEligible is the exact O(n) weighted draw among the eligible backends
// other than skip: one pass sums their weights, a second finds the winner.
// If health changes between the passes the second may run off the end; it
// then settles for the last eligible backend it saw.
func drawEligible(bs []Backend, f *filter, skip int, u uint64) (int, bool) {
	var sum uint64
	for i := range bs {
		if i != skip && f.ok(i, &bs[i]) {
			sum += uint64(bs[i].Weight)
		}
	}
	if sum == 0 {
		return -1, false
	}
	r, _ := bits.Mul64(u, sum)
	last := -1
	for i := range bs {
		if i == skip || !f.ok(i, &bs[i]) {
			continue
		}
		w := uint64(bs[i].Weight)
		if r < w {
			return i, true
		}
		r -= w
		last = i
	}
	return last, last >= 0
}
