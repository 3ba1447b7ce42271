package ratelimit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unsafe"
)

// The sync protocol's bodies, encoded by hand (varints, no reflection):
// a report costs a few dozen bytes and well under a microsecond to encode
// and decode, which is what keeps the sync traffic of 10,000 busy keys
// cheap. Every body starts with codecVersion.
//
//	sync request   version, from, n, n × (rule, key, flags, used, extra,
//	               denied, span, [returned: flags&1], [hint at a b: flags&2])
//	sync answer    version, n, n × (status, grant, ttl, count, at, a, b)
//	hand-off       version, from, n, n × (rule, key, at, a, b,
//	               leases, leases × (node, out, expires in ns))
//
// Strings are a uvarint length and bytes; counts are uvarints, and at, a,
// b and expiries signed varints.
const codecVersion = 1

// Bounds on a decoded body: a peer cannot make this node allocate more.
const (
	maxBatch     = 1 << 16 // lines in one body
	maxString    = 1 << 10 // bytes in one name or key
	maxLeasesIn  = 256     // leases of one key in a hand-off
	reportHasRet = 1
	reportHasHnt = 2
)

// errMalformed is returned for a body that does not decode.
var errMalformed = errors.New("ratelimit: malformed sync body")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendSnap(b []byte, s snap) []byte {
	b = binary.AppendVarint(b, s.at)
	b = binary.AppendVarint(b, s.a)
	return binary.AppendVarint(b, s.b)
}

func encodeReports(b []byte, from string, reps []report) []byte {
	b = slices.Grow(b, 16+len(from)+len(reps)*32)
	b = append(b, codecVersion)
	b = appendString(b, from)
	b = binary.AppendUvarint(b, uint64(len(reps)))
	for i := range reps {
		r := &reps[i]
		b = appendString(b, r.rule)
		b = appendString(b, r.key)
		var flags byte
		if r.returned > 0 {
			flags |= reportHasRet
		}
		if r.hasHint {
			flags |= reportHasHnt
		}
		b = append(b, flags)
		b = binary.AppendUvarint(b, uint64(max(r.used, 0)))
		b = binary.AppendUvarint(b, uint64(max(r.extra, 0)))
		b = binary.AppendUvarint(b, uint64(max(r.denied, 0)))
		b = binary.AppendUvarint(b, uint64(max(r.span, 0)))
		if flags&reportHasRet != 0 {
			b = binary.AppendUvarint(b, uint64(r.returned))
		}
		if flags&reportHasHnt != 0 {
			b = appendSnap(b, r.hint)
		}
	}
	return b
}

func encodeAnswers(b []byte, as []answer) []byte {
	b = slices.Grow(b, 8+len(as)*24)
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, uint64(len(as)))
	for _, a := range as {
		b = append(b, a.status)
		b = binary.AppendUvarint(b, uint64(max(a.grant, 0)))
		b = binary.AppendUvarint(b, uint64(max(a.ttl, 0)))
		b = binary.AppendUvarint(b, uint64(max(a.count, 0)))
		b = appendSnap(b, a.snap)
	}
	return b
}

// reader decodes a body; the first error sticks and every later read
// returns zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errMalformed
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint(limit uint64) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) count() int64 { return int64(r.uvarint(1 << 62)) }

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// str returns the next string aliasing the body (no copy): valid while the
// body is, which is for the whole of serve; whatever outlives it is
// cloned (table keys, lease node names).
func (r *reader) str() string {
	n := int(r.uvarint(maxString))
	if r.err != nil || len(r.b) < n {
		r.fail()
		return ""
	}
	s := unsafe.String(unsafe.SliceData(r.b), n)
	r.b = r.b[n:]
	return s
}

func (r *reader) snap() snap { return snap{at: r.varint(), a: r.varint(), b: r.varint()} }

func (r *reader) header() {
	if v := r.byte(); r.err == nil && v != codecVersion {
		r.err = fmt.Errorf("ratelimit: sync body version %d, want %d", v, codecVersion)
	}
}

// start reads what a request body begins with: the version, the sender
// and the number of lines, each of which takes at least minLine bytes: a
// body declaring more lines than it has room for is refused before the
// caller allocates for them (7 bytes declaring 65,535 sync lines made an
// owner allocate 7 MB).
func (r *reader) start(minLine int) (from string, n int) {
	r.header()
	from = r.str()
	n = int(r.uvarint(maxBatch))
	if r.err == nil && n > len(r.b)/minLine {
		r.fail()
	}
	return from, n
}

// The fewest bytes a line takes: a report is two strings, the flags and
// four counts; a hand-off two strings, a snap and its lease count.
const (
	minReportLine  = 2 + 1 + 4
	minHandoffLine = 2 + 3 + 1
)

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	return r.err
}

func decodeReports(b []byte) (from string, reps []report, err error) {
	return decodeReportsInto(nil, b)
}

// decodeReportsInto is decodeReports reusing buf's memory.
func decodeReportsInto(buf []report, b []byte) (from string, reps []report, err error) {
	r := &reader{b: b}
	from, n := r.start(minReportLine)
	if r.err != nil {
		return "", nil, r.err
	}
	reps = slices.Grow(buf[:0], n)[:n]
	clear(reps)
	for i := range reps {
		p := &reps[i]
		p.rule, p.key = r.str(), r.str()
		flags := r.byte()
		p.used, p.extra, p.denied, p.span = r.count(), r.count(), r.count(), r.count()
		if flags&reportHasRet != 0 {
			p.returned = r.count()
		}
		if flags&reportHasHnt != 0 {
			p.hasHint, p.hint = true, r.snap()
		}
	}
	return from, reps, r.done()
}

func decodeAnswers(b []byte, want int) ([]answer, error) {
	r := &reader{b: b}
	r.header()
	n := int(r.uvarint(maxBatch))
	if r.err == nil && n != want {
		return nil, fmt.Errorf("ratelimit: sync answer has %d lines for %d reports", n, want)
	}
	if r.err != nil {
		return nil, r.err
	}
	as := make([]answer, n)
	for i := range as {
		as[i] = answer{status: r.byte(), grant: r.count(), ttl: r.count(), count: r.count(), snap: r.snap()}
	}
	return as, r.done()
}

// handoff is one counter moving to its new owner.
type handoff struct {
	rule, key string
	snap      snap
	leases    []handoffLease
}

type handoffLease struct {
	node string
	out  int64
	left int64 // ns until the lease expires
}

func encodeHandoffs(b []byte, from string, hs []handoff) []byte {
	b = append(b, codecVersion)
	b = appendString(b, from)
	b = binary.AppendUvarint(b, uint64(len(hs)))
	for _, h := range hs {
		b = appendString(b, h.rule)
		b = appendString(b, h.key)
		b = appendSnap(b, h.snap)
		b = binary.AppendUvarint(b, uint64(len(h.leases)))
		for _, ls := range h.leases {
			b = appendString(b, ls.node)
			b = binary.AppendUvarint(b, uint64(max(ls.out, 0)))
			b = binary.AppendVarint(b, ls.left)
		}
	}
	return b
}

func decodeHandoffs(b []byte) (from string, hs []handoff, err error) {
	r := &reader{b: b}
	from, n := r.start(minHandoffLine)
	if r.err != nil {
		return "", nil, r.err
	}
	hs = make([]handoff, n)
	for i := range hs {
		h := &hs[i]
		h.rule, h.key, h.snap = r.str(), r.str(), r.snap()
		k := int(r.uvarint(maxLeasesIn))
		if r.err == nil && k > len(r.b)/3 { // a lease: a name, its count and expiry
			r.fail()
		}
		if r.err != nil {
			break
		}
		h.leases = make([]handoffLease, k)
		for j := range h.leases {
			h.leases[j] = handoffLease{node: r.str(), out: r.count(), left: r.varint()}
		}
	}
	return from, hs, r.done()
}
