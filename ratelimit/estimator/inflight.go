package estimator

// Inflight estimates how many operations per key are in progress: Acquire
// adds to the key's count and returns a Guard whose Release takes it back.
// It is a count-min sketch, so an estimate may exceed the true count by the
// bound in the package doc and never falls below it.
type Inflight struct {
	est *Estimator
}

// Default size of an Inflight sketch: 4 rows of 8192 counters (256 KiB).
// The counts are small and short-lived, so a wide sketch keeps collisions
// between concurrently active keys rare.
const (
	DefaultInflightDepth = 4
	DefaultInflightWidth = 8192
)

// NewInflight returns an Inflight with depth rows of width counters; zero
// means the default (DefaultInflightDepth, DefaultInflightWidth). It panics
// on negative sizes, as New does.
func NewInflight(depth, width int) *Inflight {
	if depth == 0 {
		depth = DefaultInflightDepth
	}
	if width == 0 {
		width = DefaultInflightWidth
	}
	return &Inflight{est: New(depth, width)}
}

// Guard is one acquisition of an Inflight key. It stores the key's hash,
// not the key, and is a value: acquiring allocates nothing.
type Guard struct {
	est  *Estimator
	hash uint64
	n    int64
}

// Acquire adds n to key's in-flight count and returns the guard that
// releases it and the new estimate. Call Release exactly once per Acquire
// (typically with defer).
func (f *Inflight) Acquire(key string, n int64) (Guard, int64) {
	h := f.est.hash(key)
	return Guard{est: f.est, hash: h, n: n}, f.est.incrHash(h, n)
}

// Get returns key's estimated in-flight count.
func (f *Inflight) Get(key string) int64 { return f.est.Get(key) }

// Get returns the estimated in-flight count of the guard's key.
func (g *Guard) Get() int64 {
	if g.est == nil {
		return 0
	}
	return g.est.getHash(g.hash)
}

// Release subtracts what Acquire added. A second Release on the same Guard
// does nothing; releasing a copy of a released Guard counts twice, so do
// not copy guards.
func (g *Guard) Release() {
	if g.est == nil || g.n == 0 {
		return
	}
	g.est.incrHash(g.hash, -g.n)
	g.n = 0
}
