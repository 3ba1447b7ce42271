package ketama

import (
	"encoding/binary"
	"hash/crc32"
	"slices"
	"strings"
	"unsafe"
)

// pointsPerWeight is how many ring points one unit of weight buys. nginx
// (ngx_http_upstream_init_chash) and pingora-ketama both use 160.
const pointsPerWeight = 160

// Bucket is one server on the ring.
type Bucket struct {
	// Addr is "host:port" as written in the upstream configuration, for
	// example "10.0.0.1:443" or "[::1]:80". See the package doc for how it
	// is split.
	Addr string
	// Weight scales the server's share of the ring: it gets 160*Weight
	// points. A Weight <= 0 gives the server no points at all.
	Weight int
}

// Continuum is an immutable consistent-hash ring. It is safe for concurrent
// use by many goroutines; build a new one with New to change the servers.
type Continuum struct {
	// hashes and nodes are parallel: point p has hash hashes[p] and belongs
	// to bucket nodes[p]. Keeping the hashes in their own slice keeps the
	// binary search dense in cache.
	hashes []uint32
	nodes  []uint32
	// servers counts the distinct buckets that own at least one point.
	servers int
}

// New builds the ring for buckets exactly as nginx does. Indices returned by
// lookups are indices into buckets. New does not keep buckets.
func New(buckets []Bucket) *Continuum {
	total := 0
	for _, b := range buckets {
		if b.Weight > 0 {
			total += b.Weight * pointsPerWeight
		}
	}
	// Pack hash<<32 | bucket index so that one plain sort orders by hash
	// and, among equal hashes, by bucket index, which is generation order
	// (duplicate hashes inside one bucket are interchangeable). That makes
	// "keep the first duplicate" match nginx's stable insertion sort.
	packed := make([]uint64, 0, total)
	for i, b := range buckets {
		if b.Weight <= 0 {
			continue
		}
		packed = appendPoints(packed, uint32(i), b)
	}
	slices.Sort(packed)
	packed = dedupHashes(packed)

	c := &Continuum{
		hashes: make([]uint32, len(packed)),
		nodes:  make([]uint32, len(packed)),
	}
	seen := make([]bool, len(buckets))
	for p, v := range packed {
		c.hashes[p] = uint32(v >> 32)
		c.nodes[p] = uint32(v)
		if !seen[uint32(v)] {
			seen[uint32(v)] = true
			c.servers++
		}
	}
	return c
}

// appendPoints appends the 160*b.Weight chained points of bucket i.
func appendPoints(dst []uint64, i uint32, b Bucket) []uint64 {
	host, port := splitAddr(b.Addr)
	base := crc32.ChecksumIEEE([]byte(host))
	base = crc32.Update(base, crc32.IEEETable, []byte{0})
	base = crc32.Update(base, crc32.IEEETable, []byte(port))
	var prev [4]byte
	n := b.Weight * pointsPerWeight
	for range n {
		h := crc32.Update(base, crc32.IEEETable, prev[:])
		dst = append(dst, uint64(h)<<32|uint64(i))
		binary.LittleEndian.PutUint32(prev[:], h)
	}
	return dst
}

// splitAddr splits addr the way ngx_http_upstream_init_chash does.
func splitAddr(addr string) (host, port string) {
	if len(addr) >= 5 && strings.EqualFold(addr[:5], "unix:") {
		return addr[5:], ""
	}
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[:i], addr[i+1:]
	}
	return addr, ""
}

// dedupHashes drops every packed point whose hash equals the one before it;
// the input is sorted, so the survivor is the first generated.
func dedupHashes(p []uint64) []uint64 {
	if len(p) == 0 {
		return p
	}
	out := 1
	for j := 1; j < len(p); j++ {
		if p[j]>>32 != p[out-1]>>32 {
			p[out] = p[j]
			out++
		}
	}
	return p[:out]
}

// Len reports the number of points on the ring after duplicates were
// dropped.
func (c *Continuum) Len() int { return len(c.hashes) }

// Servers reports how many distinct buckets own at least one point. It is
// the most Distinct can ever return.
func (c *Continuum) Servers() int { return c.servers }

// Node returns the index of the bucket that owns key. ok is false when the
// ring has no points.
func (c *Continuum) Node(key []byte) (index int, ok bool) {
	return c.nodeAt(crc32.ChecksumIEEE(key))
}

// NodeString is Node for a string key. It does not allocate.
func (c *Continuum) NodeString(key string) (index int, ok bool) {
	return c.nodeAt(crc32.ChecksumIEEE(stringBytes(key)))
}

func (c *Continuum) nodeAt(h uint32) (int, bool) {
	if len(c.hashes) == 0 {
		return -1, false
	}
	return int(c.nodes[c.search(h)]), true
}

// search returns the first point whose hash is >= h, wrapping to 0. The ring
// must not be empty.
func (c *Continuum) search(h uint32) int {
	lo, hi := 0, len(c.hashes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if c.hashes[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(c.hashes) {
		return 0
	}
	return lo
}

// stringBytes views s as a byte slice without copying. The slice must never
// be written; crc32 only reads it. A plain []byte(s) conversion would
// allocate because the escape analysis cannot see through crc32's
// architecture dispatch.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
