package ketama

import (
	"hash/crc32"
	"slices"
)

// Walker visits the ring's points in order, starting at the point that owns
// a key and wrapping around, and stops after one full turn. Consecutive
// points often belong to the same server; Next reports every point, so a
// caller looking for a different server skips repeats itself (or uses
// Distinct).
//
// A Walker is a small value: it does not allocate and must not be shared
// between goroutines. The zero Walker yields nothing.
type Walker struct {
	c    *Continuum
	pos  int // next point to report
	left int // points left before one full turn is complete
}

// Walk returns a Walker that starts at the point owning key.
func (c *Continuum) Walk(key []byte) Walker {
	return c.walkAt(crc32.ChecksumIEEE(key))
}

// WalkString is Walk for a string key. It does not allocate.
func (c *Continuum) WalkString(key string) Walker {
	return c.walkAt(crc32.ChecksumIEEE(stringBytes(key)))
}

func (c *Continuum) walkAt(h uint32) Walker {
	if len(c.hashes) == 0 {
		return Walker{}
	}
	return Walker{c: c, pos: c.search(h), left: len(c.hashes)}
}

// Next returns the bucket index of the next point. ok is false once the walk
// has visited every point on the ring once.
func (w *Walker) Next() (index int, ok bool) {
	if w.left <= 0 {
		return -1, false
	}
	i := int(w.c.nodes[w.pos])
	w.pos++
	if w.pos == len(w.c.nodes) {
		w.pos = 0
	}
	w.left--
	return i, true
}

// Distinct fills dst with up to len(dst) distinct bucket indices in ring
// order starting at the owner of key, and returns the filled prefix. The
// first element is Node(key); the rest are the servers a request for key
// should fall back to, or hold its replicas. Fewer than len(dst) come back
// when the ring has fewer distinct servers (see Servers). Distinct never
// allocates.
func (c *Continuum) Distinct(key []byte, dst []int) []int {
	return c.distinctAt(crc32.ChecksumIEEE(key), dst)
}

// DistinctString is Distinct for a string key. It does not allocate.
func (c *Continuum) DistinctString(key string, dst []int) []int {
	return c.distinctAt(crc32.ChecksumIEEE(stringBytes(key)), dst)
}

func (c *Continuum) distinctAt(h uint32, dst []int) []int {
	want := min(len(dst), c.servers)
	n := 0
	w := c.walkAt(h)
	for n < want {
		i, ok := w.Next()
		if !ok {
			break
		}
		// A linear scan: replica counts are small, and scanning a few ints
		// beats any set that would have to be allocated.
		if !slices.Contains(dst[:n], i) {
			dst[n] = i
			n++
		}
	}
	return dst[:n]
}
