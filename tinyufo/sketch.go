package tinyufo

// sketch is TinyLFU's frequency estimate: a count-min sketch of 8-bit
// saturating counters over the key hashes seen by Put, halved every
// window increments so that old popularity fades. It is not safe for
// concurrent use: the policy mutex guards it.
type sketch struct {
	cells  []uint8 // sketchDepth rows of width counters
	shift  uint    // 64 - log2(width)
	width  int
	count  int // increments since the last halving
	window int // halve after this many increments
}

// sketchDepth rows; each row's index is the top bits of the key hash times
// one of these odd constants (multiply-shift hashing over a seeded hash).
const sketchDepth = 4

var sketchMul = [sketchDepth]uint64{
	0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9, 0x94d049bb133111eb, 0xd6e8feb86659fd93,
}

// newSketch sizes the sketch for about entries cached objects: width is
// the power of two at or above 2·entries (an error of ε = e/width ≈ 1.4/
// entries of the window's increments per row, enough to rank candidates),
// and the window is 8·entries increments, as in TinyUFO.
func newSketch(entries int) *sketch {
	entries = max(entries, 16)
	w := 1
	shift := uint(64)
	for w < 2*entries {
		w <<= 1
		shift--
	}
	return &sketch{cells: make([]uint8, sketchDepth*w), shift: shift, width: w, window: 8 * entries}
}

func (s *sketch) index(i int, h uint64) int {
	return i*s.width + int((h*sketchMul[i])>>s.shift)
}

// incr counts one more occurrence of h and returns its new estimate.
func (s *sketch) incr(h uint64) uint8 {
	s.count++
	if s.count >= s.window {
		s.age()
	}
	est := uint8(255)
	for i := range sketchDepth {
		c := &s.cells[s.index(i, h)]
		if *c < 255 {
			*c++
		}
		est = min(est, *c)
	}
	return est
}

// get returns the estimate of h.
func (s *sketch) get(h uint64) uint8 {
	est := uint8(255)
	for i := range sketchDepth {
		est = min(est, s.cells[s.index(i, h)])
	}
	return est
}

// age halves every counter.
func (s *sketch) age() {
	s.count = 0
	for i := range s.cells {
		s.cells[i] >>= 1
	}
}
