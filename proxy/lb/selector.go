package lb

// Backend is one peer of an upstream group as given to New.
type Backend struct {
	// Addr is the peer's "host:port". Only ketama reads it; it is the ring
	// identity, so keep it stable across reloads.
	Addr string
	// Weight is the peer's relative share of traffic. 0 means 1; negative
	// is an error.
	Weight int
	// State is the peer's shared counters. nil means New gives the
	// selector a private, always-healthy State nobody else can see.
	State *State
}

// Selector picks a backend. Every method returns an index into the backend
// slice the selector was built with, never allocates, and is safe for
// concurrent use. For keyless policies (round_robin, random, least_conn,
// p2c) key is ignored.
type Selector interface {
	// Select picks a healthy backend. ok is false when no backend is
	// healthy; the caller decides between answering 503 and SelectAny.
	Select(key string) (index int, ok bool)
	// SelectAny picks a backend as if every backend were healthy. It is the
	// "try anyway" fallback when Select fails; ok is false only when the
	// selector has no backend it could ever pick.
	SelectAny(key string) (index int, ok bool)
	// SelectExcluding picks a healthy backend that is not in tried, so a
	// retry goes to a different peer when one exists. ok is false when every
	// healthy backend has been tried.
	SelectExcluding(key string, tried Tried) (index int, ok bool)
}

// MaxTried is how many backend indices a Tried can hold.
const MaxTried = 256

// Tried is a fixed-size set of backend indices already attempted for one
// request. It is a value (32 bytes): pass it by value, so that it stays on
// the caller's stack even through the Selector interface. The zero Tried is
// empty.
//
// Indices >= MaxTried are not recorded (Add reports false), so in a group
// with more than MaxTried backends a retry may land on such a backend twice.
// That costs a repeated attempt, never a wrong answer.
type Tried struct {
	bits [MaxTried / 64]uint64
}

// Add records index i and reports whether it could; see Tried for the
// MaxTried limit.
func (t *Tried) Add(i int) bool {
	if uint(i) >= MaxTried {
		return false
	}
	t.bits[uint(i)/64] |= 1 << (uint(i) % 64)
	return true
}

// Has reports whether index i was recorded.
func (t *Tried) Has(i int) bool {
	return uint(i) < MaxTried && t.bits[uint(i)/64]&(1<<(uint(i)%64)) != 0
}

// filter says which backends a pick may return.
type filter struct {
	tried Tried
	any   bool // ignore health
}

func (f *filter) ok(i int, b *Backend) bool {
	return !f.tried.Has(i) && (f.any || b.State.Healthy())
}
