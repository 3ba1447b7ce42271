package estimator

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"sync/atomic"
)

// Estimator is a lock-free count-min sketch: depth rows of width signed
// counters. Incr adds to one counter per row and returns the smallest of
// them, which never underestimates a key's true count while every
// increment is positive (see the package doc for the overestimate bound).
// It is safe for concurrent use and never allocates after New.
type Estimator struct {
	seed  maphash.Seed
	shift uint             // 64 - log2(width): a row index is the top bits of a product
	width int              // counters per row, a power of two
	depth int              // rows, at most maxDepth
	mul   [maxDepth]uint64 // one odd multiplier per row (multiply-shift hashing)
	cells []counter        // depth*width counters, row-major
}

// maxDepth bounds the rows: δ = e^-16 is about 1e-7, and a fixed array of
// multipliers keeps the per-row loop free of bounds checks.
const maxDepth = 16

// counter is an atomic int64. A plain alias keeps the cells slice compact
// (8 bytes a counter; padding them apart would multiply the memory by 8
// for little gain: concurrent writers rarely touch the same cell).
type counter = atomic.Int64

// New returns an Estimator with depth rows and width counters per row;
// width is rounded up to a power of two. It panics if depth is outside
// 1..16 or width is below 1 (a programmer error at construction).
func New(depth, width int) *Estimator {
	if depth < 1 || depth > maxDepth || width < 1 {
		panic(fmt.Sprintf("estimator: New(depth=%d, width=%d): depth must be 1..%d and width >= 1", depth, width, maxDepth))
	}
	return newWithSeed(maphash.MakeSeed(), depth, width)
}

// NewForError returns an Estimator sized so that an estimate exceeds the
// true count by more than epsilon·N (N = sum of all increments) with
// probability at most delta: width = e/epsilon (rounded up to a power of
// two, which only tightens epsilon) and depth = ln(1/delta). It panics
// unless 0 < epsilon < 1 and e^-16 <= delta < 1.
func NewForError(epsilon, delta float64) *Estimator {
	if !(epsilon > 0 && epsilon < 1 && delta >= math.Exp(-maxDepth) && delta < 1) {
		panic(fmt.Sprintf("estimator: NewForError(%g, %g): need 0 < epsilon < 1 and e^-16 <= delta < 1", epsilon, delta))
	}
	width := int(math.Ceil(math.E / epsilon))
	depth := int(math.Ceil(math.Log(1 / delta)))
	return New(max(depth, 1), width)
}

func newWithSeed(seed maphash.Seed, depth, width int) *Estimator {
	w := 1 << bits.Len(uint(width-1)) // next power of two >= width
	e := &Estimator{
		seed:  seed,
		shift: uint(64 - bits.TrailingZeros(uint(w))),
		width: w,
		depth: depth,
		cells: make([]counter, depth*w),
	}
	var b [8]byte
	for i := range e.mul[:depth] {
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		e.mul[i] = maphash.Bytes(seed, b[:]) | 1
	}
	return e
}

// Depth is the number of rows (hash functions).
func (e *Estimator) Depth() int { return e.depth }

// Width is the number of counters per row.
func (e *Estimator) Width() int { return e.width }

// Epsilon is the error factor e/width of the bound in the package doc.
func (e *Estimator) Epsilon() float64 { return math.E / float64(e.width) }

// Delta is the failure probability e^-depth of the bound in the package doc.
func (e *Estimator) Delta() float64 { return math.Exp(-float64(e.depth)) }

// hash is the key's seeded 64-bit hash; every row index derives from it.
func (e *Estimator) hash(key string) uint64 { return maphash.String(e.seed, key) }

// index is the cell of row i for hash h. Multiply-shift with a random odd
// multiplier per row makes the rows' collisions independent. For width 1
// the shift is 64 and Go defines the result as 0.
func (e *Estimator) index(i int, h uint64) int {
	return i*e.width + int((h*e.mul[i&(maxDepth-1)])>>e.shift)
}

// Incr adds n to key and returns the new estimate of its count.
func (e *Estimator) Incr(key string, n int64) int64 { return e.incrHash(e.hash(key), n) }

func (e *Estimator) incrHash(h uint64, n int64) int64 {
	est := int64(math.MaxInt64)
	for i := 0; i < e.depth; i++ {
		est = min(est, e.cells[e.index(i, h)].Add(n))
	}
	return est
}

// Decr subtracts n from key (the inverse of Incr(key, n)).
func (e *Estimator) Decr(key string, n int64) { e.incrHash(e.hash(key), -n) }

// Get returns the estimate of key's count.
func (e *Estimator) Get(key string) int64 { return e.getHash(e.hash(key)) }

func (e *Estimator) getHash(h uint64) int64 {
	est := int64(math.MaxInt64)
	for i := 0; i < e.depth; i++ {
		est = min(est, e.cells[e.index(i, h)].Load())
	}
	return est
}

// Reset sets every counter to zero. Increments that run concurrently with
// Reset may survive it or not.
func (e *Estimator) Reset() {
	for i := range e.cells {
		e.cells[i].Store(0)
	}
}
