package lb

// Random picks an eligible backend at random in proportion to its weight.
// It holds no mutable state of its own, so picks take no lock.
type Random struct {
	backends []Backend
	s        sampler
	rand     func() uint64
}

var _ Selector = (*Random)(nil)

// NewRandom builds a Random over backends (see New), drawing from
// opt.Rand.
func NewRandom(backends []Backend, opt Options) (*Random, error) {
	bs, err := prepare(backends)
	if err != nil {
		return nil, err
	}
	return &Random{backends: bs, s: newSampler(bs), rand: opt.rand()}, nil
}

// Select implements Selector.
func (r *Random) Select(string) (int, bool) { return r.pick(filter{}) }

// SelectAny implements Selector.
func (r *Random) SelectAny(string) (int, bool) { return r.pick(filter{any: true}) }

// SelectExcluding implements Selector.
func (r *Random) SelectExcluding(_ string, tried Tried) (int, bool) {
	return r.pick(filter{tried: tried})
}

func (r *Random) pick(f filter) (int, bool) {
	return r.s.pick(r.backends, &f, -1, r.rand)
}
