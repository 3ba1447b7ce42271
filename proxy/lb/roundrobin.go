package lb

import "sync"

// RoundRobin is nginx's smooth weighted round robin
// (ngx_http_upstream_get_peer): on each pick every eligible backend's
// current weight grows by its weight, the largest current weight wins (the
// first on ties), and the winner gives back the total. Weights 5,1,1 give
// a a b a c a a: the heavy backend is spread out rather than sent a burst.
//
// Ineligible backends (unhealthy, or already tried) take no part in a
// pick, exactly as nginx skips down and tried peers. The per-backend
// current weights are the one piece of shared mutable selection state in
// this package, so picks take a mutex; it is held for one O(n) pass of
// integer adds.
type RoundRobin struct {
	backends []Backend

	mu      sync.Mutex
	current []int64 // guarded by mu
}

var _ Selector = (*RoundRobin)(nil)

// NewRoundRobin builds a RoundRobin over backends (see New). opt is unused:
// the policy is deterministic.
func NewRoundRobin(backends []Backend, opt Options) (*RoundRobin, error) {
	bs, err := prepare(backends)
	if err != nil {
		return nil, err
	}
	return &RoundRobin{backends: bs, current: make([]int64, len(bs))}, nil
}

// Select implements Selector.
func (r *RoundRobin) Select(string) (int, bool) { return r.pick(filter{}) }

// SelectAny implements Selector.
func (r *RoundRobin) SelectAny(string) (int, bool) { return r.pick(filter{any: true}) }

// SelectExcluding implements Selector.
func (r *RoundRobin) SelectExcluding(_ string, tried Tried) (int, bool) {
	return r.pick(filter{tried: tried})
}

func (r *RoundRobin) pick(f filter) (int, bool) {
	if len(r.backends) == 1 {
		// Nothing to rotate; skip the lock.
		if f.ok(0, &r.backends[0]) {
			return 0, true
		}
		return -1, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	best := -1
	var total int64
	for i := range r.backends {
		if !f.ok(i, &r.backends[i]) {
			continue
		}
		w := int64(r.backends[i].Weight)
		r.current[i] += w
		total += w
		if best < 0 || r.current[i] > r.current[best] {
			best = i
		}
	}
	if best < 0 {
		return -1, false
	}
	r.current[best] -= total
	return best, true
}
