package membership

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pingora-go/pingora-go/ketama"
)

// Ring is an immutable ketama ring over the members that can answer: alive
// (or suspect), ready, and gossiping a cluster RPC address (see onRing and
// the life cycle in the package doc), weighted by Meta.Weight. Each member
// comes with that address, so the owner of a key is callable straight from
// the snapshot. Cluster.Ring returns the current one; a membership change
// publishes a new Ring, so a caller that loads one keeps a consistent view.
// It is safe for concurrent use.
type Ring struct {
	version uint64
	digest  string
	self    string
	names   []string // sorted; ketama bucket i is names[i]
	weights []int
	addrs   []string // addrs[i] is names[i]'s cluster RPC address
	c       *ketama.Continuum

	sharesOnce sync.Once
	shares     map[string]float64
}

// maxOwnersOnStack is the replica count AppendOwners serves without
// allocating scratch space.
const maxOwnersOnStack = 16

// RingMember is one member of a Ring: its name, its weight and its
// cluster RPC address.
type RingMember struct {
	Name   string
	Weight int
	Addr   string
}

// NewRing builds a ring over members (name to weight; weights <= 0 are left
// out) as seen by self, with no addresses. Tests and other packages may
// build fixed rings with it; NewRingOf adds the addresses.
func NewRing(version uint64, self string, members map[string]int) *Ring {
	ms := make([]RingMember, 0, len(members))
	for name, w := range members {
		ms = append(ms, RingMember{Name: name, Weight: w})
	}
	return NewRingOf(version, self, ms)
}

// NewRingOf builds a ring over members (weights <= 0 are left out; a name
// given twice keeps its first entry) as seen by self. Cluster builds its
// rings with it.
func NewRingOf(version uint64, self string, members []RingMember) *Ring {
	ms := slices.Clone(members)
	ms = slices.DeleteFunc(ms, func(m RingMember) bool { return m.Weight <= 0 })
	slices.SortStableFunc(ms, func(a, b RingMember) int { return strings.Compare(a.Name, b.Name) })
	ms = slices.CompactFunc(ms, func(a, b RingMember) bool { return a.Name == b.Name })
	r := &Ring{version: version, self: self}
	buckets := make([]ketama.Bucket, len(ms))
	h := sha256.New()
	for i, m := range ms {
		r.names = append(r.names, m.Name)
		r.weights = append(r.weights, m.Weight)
		r.addrs = append(r.addrs, m.Addr)
		// The node name is the bucket "address": with no ':' ketama hashes
		// the whole name as the host and an empty port.
		buckets[i] = ketama.Bucket{Addr: m.Name, Weight: m.Weight}
		h.Write([]byte(m.Name))
		h.Write([]byte{0})
		h.Write(strconv.AppendInt(nil, int64(m.Weight), 10))
		if m.Addr != "" { // rings without addresses keep their digests
			h.Write([]byte{0})
			h.Write([]byte(m.Addr))
		}
		h.Write([]byte{'\n'})
	}
	r.digest = hex.EncodeToString(h.Sum(nil)[:8])
	r.c = ketama.New(buckets)
	return r
}

// Version increases by one each time the member set, a weight or an address
// changes, as seen by this node; versions are local, digests are comparable
// across nodes.
func (r *Ring) Version() uint64 { return r.version }

// Digest is a hash of the sorted member names, weights and addresses: two
// nodes with the same digest place every key identically and call its
// owner at the same address.
func (r *Ring) Digest() string { return r.digest }

// Members returns the ring's member names, sorted. The slice is a copy.
func (r *Ring) Members() []string { return slices.Clone(r.names) }

// Len reports the number of members on the ring.
func (r *Ring) Len() int { return len(r.names) }

// Owner returns the member that owns key and whether it is this node. It
// returns "", false on an empty ring. It does not allocate.
func (r *Ring) Owner(key string) (nodeID string, self bool) {
	i, ok := r.c.NodeString(key)
	if !ok {
		return "", false
	}
	return r.names[i], r.names[i] == r.self
}

// Addr returns member nodeID's cluster RPC address, or "" when nodeID is
// not on the ring. It does not allocate.
func (r *Ring) Addr(nodeID string) string {
	if i, ok := slices.BinarySearch(r.names, nodeID); ok {
		return r.addrs[i]
	}
	return ""
}

// OwnerAddr is Owner with the owner's cluster RPC address: what a caller
// needs to reach it, from this snapshot alone. It does not allocate.
func (r *Ring) OwnerAddr(key string) (nodeID, addr string, self bool) {
	i, ok := r.c.NodeString(key)
	if !ok {
		return "", "", false
	}
	return r.names[i], r.addrs[i], r.names[i] == r.self
}

// Owners returns up to n distinct members for key, the owner first, then the
// members a replica or a fallback should go to. It allocates the result;
// AppendOwners does not.
func (r *Ring) Owners(key string, n int) []string {
	return r.AppendOwners(make([]string, 0, min(n, len(r.names))), key, n)
}

// AppendOwners appends up to n distinct owners of key to dst (see Owners).
// It does not allocate when n <= 16 and dst has room.
func (r *Ring) AppendOwners(dst []string, key string, n int) []string {
	if n <= 0 {
		return dst
	}
	var stack [maxOwnersOnStack]int
	idx := stack[:]
	if n > maxOwnersOnStack {
		idx = make([]int, n)
	}
	for _, i := range r.c.DistinctString(key, idx[:n]) {
		dst = append(dst, r.names[i])
	}
	return dst
}

// shareSamples is how many keys Shares hashes to estimate each member's part
// of the key space (ketama does not expose point hashes); the error is well
// under 1 percentage point.
const shareSamples = 1 << 16

// Shares estimates the fraction of the key space each member owns; the
// fractions sum to 1. It is computed once per Ring, on first use.
func (r *Ring) Shares() map[string]float64 {
	r.sharesOnce.Do(func() {
		counts := make([]int, len(r.names))
		var buf []byte
		for i := range shareSamples {
			buf = strconv.AppendInt(append(buf[:0], "share-sample-"...), int64(i), 10)
			if j, ok := r.c.Node(buf); ok {
				counts[j]++
			}
		}
		r.shares = make(map[string]float64, len(r.names))
		for i, name := range r.names {
			r.shares[name] = float64(counts[i]) / shareSamples
		}
	})
	out := make(map[string]float64, len(r.shares))
	for k, v := range r.shares {
		out[k] = v
	}
	return out
}
