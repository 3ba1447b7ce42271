package lb

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
)

// MaxWeight bounds Backend.Weight. nginx has no explicit limit, but an
// unbounded weight from a config document would let one typo allocate an
// enormous ketama ring (160 points per unit of weight, 8 bytes a point).
const MaxWeight = 10000

// DefaultPolicy is the policy a group gets when its config names none.
const DefaultPolicy = "round_robin"

var (
	// ErrNoBackends is returned by New when the backend list is empty.
	ErrNoBackends = errors.New("lb: no backends")
	// ErrUnknownPolicy is returned (wrapped) by New when the policy name is
	// not one of Policies().
	ErrUnknownPolicy = errors.New("lb: unknown policy")
	// ErrWeight is returned (wrapped) by New when a weight is negative or
	// above MaxWeight.
	ErrWeight = errors.New("lb: weight out of range")
)

// Options tunes the selectors New builds.
type Options struct {
	// Rand returns uniformly distributed 64-bit values for random,
	// least_conn (tie breaks) and p2c. It is called from many goroutines at
	// once and must be safe for that. (default: math/rand/v2's top-level
	// Uint64, which is goroutine-safe and lock-free because it reads the
	// runtime's per-thread ChaCha8 state)
	Rand func() uint64
}

func (o Options) rand() func() uint64 {
	if o.Rand == nil {
		return rand.Uint64
	}
	return o.Rand
}

type builder func(backends []Backend, opt Options) (Selector, error)

// policies is the read-only table New consults. It is an ordered table
// rather than a map so that Policies and the unknown-policy error list the
// names in a fixed order.
var policies = [...]struct {
	name  string
	build builder
}{
	{"round_robin", adapt(NewRoundRobin)},
	{"random", adapt(NewRandom)},
	{"least_conn", adapt(NewLeastConn)},
	{"p2c", adapt(NewP2C)},
	{"ketama", adapt(NewKetama)},
	{"fnv", adapt(NewFNV)},
}

// adapt turns a concrete constructor into a builder without letting a
// typed nil pointer become a non-nil Selector on error.
func adapt[T Selector](f func([]Backend, Options) (T, error)) builder {
	return func(b []Backend, o Options) (Selector, error) {
		s, err := f(b, o)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// Policies returns the policy names New accepts.
func Policies() []string {
	names := make([]string, len(policies))
	for i, p := range policies {
		names[i] = p.name
	}
	return names
}

// CheckPolicy returns nil when New accepts policy, else an error wrapping
// ErrUnknownPolicy that lists the names it does accept. Config parsers call
// it so that the list of names lives here only.
func CheckPolicy(policy string) error {
	for _, p := range policies {
		if p.name == policy {
			return nil
		}
	}
	return &policyError{name: policy}
}

// CheckWeight returns nil when New accepts w as a backend's weight (0,
// meaning 1, to MaxWeight), else an error wrapping ErrWeight.
func CheckWeight(w int) error {
	if w < 0 || w > MaxWeight {
		return fmt.Errorf("%w: %d is not between 1 and %d (0 means 1)", ErrWeight, w, MaxWeight)
	}
	return nil
}

// New builds the selector for policy over backends. It copies backends, so
// later changes to the slice do not affect the selector; the *State
// pointers are shared on purpose.
func New(policy string, backends []Backend, opt Options) (Selector, error) {
	for _, p := range policies {
		if p.name == policy {
			return p.build(backends, opt)
		}
	}
	return nil, &policyError{name: policy}
}

type policyError struct{ name string }

func (e *policyError) Error() string {
	return fmt.Sprintf("lb: unknown policy %q (want one of %s)", e.name, strings.Join(Policies(), ", "))
}

func (e *policyError) Unwrap() error { return ErrUnknownPolicy }

// prepare validates backends and returns the selector's private copy with
// weights defaulted and every State set.
func prepare(backends []Backend) ([]Backend, error) {
	if len(backends) == 0 {
		return nil, ErrNoBackends
	}
	out := make([]Backend, len(backends))
	for i, b := range backends {
		if CheckWeight(b.Weight) != nil {
			return nil, fmt.Errorf("%w: backend %d (%s) has %d (want 0..%d)", ErrWeight, i, b.Addr, b.Weight, MaxWeight)
		}
		if b.Weight == 0 {
			b.Weight = 1
		}
		if b.State == nil {
			b.State = NewState()
		}
		out[i] = b
	}
	return out, nil
}
