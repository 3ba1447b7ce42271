package lb

// FNV hashes the key with 64-bit FNV-1a and maps the hash onto the
// weighted backend list (backend i owning Weight[i] consecutive slots, in
// order). Adding or removing a backend remaps most keys; use Ketama when
// that matters.
//
// The slot is mix64(fnv1a(key)) * totalWeight >> 64, not fnv1a(key) %
// totalWeight as in Pingora's FNVHash. Raw FNV-1a is poorly mixed at both
// ends: its high bits barely change with the last bytes of a key (keys
// "/object/10" … "/object/19" landed on one backend in testing) and bit k
// of the hash depends only on bits 0..k of each byte, so a modulus by a
// power of two ignores most of the key. The splitmix64 finalizer fixes
// both at the cost of three multiplies.
//
// When the chosen backend is ineligible the pick probes onward
// deterministically: first a few rehashes (so the keys of one dead backend
// spread over the others by weight instead of all landing on its
// neighbour), then a linear scan from the last probe, which always
// terminates. Keys of eligible backends never move.
type FNV struct {
	backends []Backend
	s        sampler
}

var _ Selector = (*FNV)(nil)

// NewFNV builds an FNV over backends (see New). opt is unused.
func NewFNV(backends []Backend, opt Options) (*FNV, error) {
	bs, err := prepare(backends)
	if err != nil {
		return nil, err
	}
	return &FNV{backends: bs, s: newSampler(bs)}, nil
}

// Select implements Selector.
func (h *FNV) Select(key string) (int, bool) { return h.pick(key, filter{}) }

// SelectAny implements Selector.
func (h *FNV) SelectAny(key string) (int, bool) { return h.pick(key, filter{any: true}) }

// SelectExcluding implements Selector.
func (h *FNV) SelectExcluding(key string, tried Tried) (int, bool) {
	return h.pick(key, filter{tried: tried})
}

func (h *FNV) pick(key string, f filter) (int, bool) {
	x := mix64(fnv1a(key))
	i := h.s.draw(x)
	for range rejectTries {
		if f.ok(i, &h.backends[i]) {
			return i, true
		}
		x = mix64(x + 0x9e3779b97f4a7c15) // splitmix64 step
		i = h.s.draw(x)
	}
	n := len(h.backends)
	for j := range n {
		k := i + j
		if k >= n {
			k -= n
		}
		if f.ok(k, &h.backends[k]) {
			return k, true
		}
	}
	return -1, false
}

// fnv1a is 64-bit FNV-1a over the bytes of s (hash/fnv would need a
// []byte and an allocated hasher).
func fnv1a(s string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// mix64 is the splitmix64 finalizer.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
