package lb

import "github.com/pingora-go/pingora-go/ketama"

// Ketama hashes the key onto an nginx-compatible ketama ring built from the
// backends' Addr and Weight (see package ketama). When the owner of a key is
// ineligible, the pick walks on around the ring to the next point whose
// backend is eligible, so only the keys of an unhealthy backend move, and
// they come back when it recovers.
//
// Backends with the same Addr share one position on the ring: all the
// points of the later one are duplicates, so it is never picked.
type Ketama struct {
	backends []Backend
	ring     *ketama.Continuum
}

var _ Selector = (*Ketama)(nil)

// NewKetama builds a Ketama over backends (see New). opt is unused.
func NewKetama(backends []Backend, opt Options) (*Ketama, error) {
	bs, err := prepare(backends)
	if err != nil {
		return nil, err
	}
	buckets := make([]ketama.Bucket, len(bs))
	for i, b := range bs {
		buckets[i] = ketama.Bucket{Addr: b.Addr, Weight: b.Weight}
	}
	return &Ketama{backends: bs, ring: ketama.New(buckets)}, nil
}

// Select implements Selector.
func (k *Ketama) Select(key string) (int, bool) { return k.pick(key, filter{}) }

// SelectAny implements Selector.
func (k *Ketama) SelectAny(key string) (int, bool) { return k.pick(key, filter{any: true}) }

// SelectExcluding implements Selector.
func (k *Ketama) SelectExcluding(key string, tried Tried) (int, bool) {
	return k.pick(key, filter{tried: tried})
}

// pick walks the ring from key's point to the first eligible backend. It
// counts the distinct ineligible backends it meets and gives up once it has
// met every server on the ring, so an all-down group costs a few hundred
// steps, not a full turn of 160 points per unit of weight. Beyond MaxTried
// backends it cannot count, so it checks up front that some backend is
// eligible and lets the walk run.
func (k *Ketama) pick(key string, f filter) (int, bool) {
	servers := k.ring.Servers()
	if servers > MaxTried && !k.anyEligible(&f) {
		return -1, false
	}
	var seen Tried
	met := 0
	w := k.ring.WalkString(key)
	for {
		i, ok := w.Next()
		if !ok {
			return -1, false
		}
		if f.ok(i, &k.backends[i]) {
			return i, true
		}
		if !seen.Has(i) && seen.Add(i) {
			met++
			if met == servers {
				return -1, false
			}
		}
	}
}

func (k *Ketama) anyEligible(f *filter) bool {
	for i := range k.backends {
		if f.ok(i, &k.backends[i]) {
			return true
		}
	}
	return false
}
