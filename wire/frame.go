package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ProtoRPC is the first byte a dialer writes on a new connection. See the
// package doc for why the port has a magic byte.
const ProtoRPC byte = 0xC7

// ProtoRaft is the first byte reserved for raft on a port shared through a
// Mux. wire does not speak it; it is listed here so the bytes of one port
// are chosen in one place (see the package doc).
const ProtoRaft byte = 0xC8

// Frame types; see the package doc.
const (
	frameRequest  byte = 1 // version 1 request: no header, kept for old callers
	frameResponse byte = 2
	frameError    byte = 3
	frameGoAway   byte = 4
	frameCall     byte = 5 // request with a call header (deadline, ring, flags)
	frameData     byte = 6 // one chunk of a streamed answer
	frameEnd      byte = 7 // a streamed answer ended cleanly
	frameCancel   byte = 8 // the caller gave up on a call
	frameMax           = frameCancel
)

const (
	// headerLen is the type byte plus the call ID, counted by the length.
	headerLen = 1 + 8
	// callHeaderLen is a call frame's fixed part: flags, timeout, ring.
	callHeaderLen = 1 + 8 + 8
	// DefaultMaxFrameSize bounds one frame (16 MiB).
	DefaultMaxFrameSize = 16 << 20
	// maxMethodLen is the longest method name a request can carry.
	maxMethodLen = 255
)

// Call header flags.
const (
	flagStream byte = 1 << 0 // the caller reads the answer as a stream
	flagTrace  byte = 1 << 1 // trace context follows the fixed header
)

// maxTraceField is the longest traceparent or tracestate a call carries
// (each has a one-byte length); a longer tracestate is dropped.
const maxTraceField = 255

// ErrFrameTooLarge is returned when a frame's length prefix exceeds the
// reader's maximum, or a call's encoded request exceeds the writer's.
var ErrFrameTooLarge = errors.New("wire: frame too large")

// ErrMalformed is returned when a frame cannot be parsed (short length,
// unknown type, bad method length).
var ErrMalformed = errors.New("wire: malformed frame")

// frame is one decoded frame. payload aliases the buffer it was read into.
type frame struct {
	typ     byte
	id      uint64
	payload []byte
}

// readFrame reads one frame from r, refusing a length above max before it
// allocates anything.
func readFrame(r io.Reader, max int) (frame, error) {
	return readFrameBuf(r, max, nil, nil)
}

// ErrFrameBudget is the error of a large frame that arrived while other
// large frames being received held the server's whole FrameBudget.
var ErrFrameBudget = errors.New("wire: too many large frames being received at once")

// frameBudget bounds the bytes of large frames being received at once,
// over all of a server's connections: each connection may send up to
// MaxFrameSize, but a few thousand connections each half-way through a
// 16 MiB frame must not hold tens of gigabytes.
type frameBudget struct {
	mu         sync.Mutex
	used, size int64
}

// take reserves n bytes, or reports false when they are not free.
func (b *frameBudget) take(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+int64(n) > b.size {
		return false
	}
	b.used += int64(n)
	return true
}

func (b *frameBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

func (b *frameBudget) put(n int) {
	b.mu.Lock()
	b.used -= int64(n)
	b.mu.Unlock()
}

// readFrameBuf is readFrame taking a data frame's payload buffer from
// chunks when it fits, so a stream does not hand the garbage collector a
// chunk per frame (GC pauses were most of a small call's tail latency
// beside a bulk stream).
func readFrameBuf(r io.Reader, max int, chunks *chunkPool, budget *frameBudget) (frame, error) {
	var hdr [4 + headerLen]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if uint64(n) > uint64(max) {
		return frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	if n < headerLen {
		return frame{}, fmt.Errorf("%w: length %d", ErrMalformed, n)
	}
	if _, err := io.ReadFull(r, hdr[4:]); err != nil {
		return frame{}, noEOF(err)
	}
	f := frame{typ: hdr[4], id: binary.BigEndian.Uint64(hdr[5:])}
	if f.typ < frameRequest || f.typ > frameMax {
		return frame{}, fmt.Errorf("%w: unknown type %d", ErrMalformed, f.typ)
	}
	size := int(n - headerLen)
	if f.typ == frameData && chunks != nil && size <= chunks.size {
		f.payload = chunks.get(size)
		if _, err := io.ReadFull(r, f.payload); err != nil {
			return frame{}, noEOF(err)
		}
		return f, nil
	}
	if budget != nil && size > eagerPayload {
		if !budget.take(size) {
			return frame{}, fmt.Errorf("%w (%d bytes)", ErrFrameBudget, size)
		}
		defer budget.put(size)
	}
	p, err := readPayload(r, size)
	if err != nil {
		return frame{}, noEOF(err)
	}
	f.payload = p
	return f, nil
}

// eagerPayload is the largest payload allocated whole from its declared
// length; a larger one grows with the bytes that arrive.
const eagerPayload = 64 << 10

// readPayload reads a payload of n bytes. Up to eagerPayload it is
// allocated at once; beyond, the buffer grows (doubling) as bytes come, so
// a peer that declares 16 MiB and sends a few bytes pins a few bytes, not
// 16 MiB (60 such connections held a node's RSS at 1 GB).
func readPayload(r io.Reader, n int) ([]byte, error) {
	if n <= eagerPayload {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	b := make([]byte, 0, eagerPayload)
	for len(b) < n {
		if len(b) == cap(b) {
			b = append(b, make([]byte, min(cap(b), n-cap(b)))...)[:len(b)]
		}
		m, err := r.Read(b[len(b):min(cap(b), n)])
		b = b[:len(b)+m]
		if err != nil {
			if err == io.EOF && len(b) < n {
				err = io.ErrUnexpectedEOF
			}
			if len(b) < n {
				return nil, err
			}
		}
	}
	return b, nil
}

// noEOF turns a clean EOF in the middle of a frame into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendFrame appends a frame with the given parts (concatenated as the
// payload) to dst.
func appendFrame(dst []byte, typ byte, id uint64, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	dst = appendFrameHeader(dst, typ, id, n)
	for _, p := range parts {
		dst = append(dst, p...)
	}
	return dst
}

// appendFrameHeader appends the length, type and call ID of a frame whose
// payload is n bytes long.
func appendFrameHeader(dst []byte, typ byte, id uint64, n int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(headerLen+n))
	dst = append(dst, typ)
	return binary.BigEndian.AppendUint64(dst, id)
}

// frameLen is the wire size of a frame carrying payload bytes.
func frameLen(payload int) int { return 4 + headerLen + payload }

// callHeader is a call frame's header: the fixed part, and the trace
// context when flagTrace is set.
type callHeader struct {
	flags   byte
	timeout time.Duration // the caller's time left; 0 means no deadline
	ring    uint64        // the caller's ring version; 0 means none
	trace   TraceContext
}

// withTrace sets h's trace context, and its flag when tc has a parent.
func (h *callHeader) withTrace(tc TraceContext) {
	h.flags &^= flagTrace
	h.trace = TraceContext{}
	if tc.Parent != "" && len(tc.Parent) <= maxTraceField {
		if len(tc.State) > maxTraceField {
			tc.State = ""
		}
		h.flags |= flagTrace
		h.trace = tc
	}
}

// traceLen is the size of h's trace context on the wire.
func (h *callHeader) traceLen() int {
	if h.flags&flagTrace == 0 {
		return 0
	}
	return 2 + len(h.trace.Parent) + len(h.trace.State)
}

// request is a parsed request or call frame.
type request struct {
	callHeader
	method string
	body   []byte
}

// appendCall appends a call frame.
func appendCall(dst []byte, id uint64, h callHeader, method string, body []byte) []byte {
	n := callHeaderLen + h.traceLen() + 1 + len(method) + len(body)
	dst = appendFrameHeader(dst, frameCall, id, n)
	dst = append(dst, h.flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.timeout/time.Microsecond))
	dst = binary.BigEndian.AppendUint64(dst, h.ring)
	if h.flags&flagTrace != 0 {
		dst = append(append(dst, byte(len(h.trace.Parent))), h.trace.Parent...)
		dst = append(append(dst, byte(len(h.trace.State))), h.trace.State...)
	}
	dst = append(dst, byte(len(method)))
	dst = append(dst, method...)
	return append(dst, body...)
}

// callFrameLen is the wire size of a call frame with header h.
func callFrameLen(h *callHeader, method string, body int) int {
	return frameLen(callHeaderLen + h.traceLen() + 1 + len(method) + body)
}

// parseRequest splits a request (type 1) or call (type 5) frame into its
// header, method and body.
func parseRequest(f frame) (request, error) {
	p := f.payload
	var r request
	if f.typ == frameCall {
		if len(p) < callHeaderLen {
			return r, fmt.Errorf("%w: call header of %d bytes", ErrMalformed, len(p))
		}
		us := binary.BigEndian.Uint64(p[1:9])
		if us > uint64(maxTimeout/time.Microsecond) {
			return r, fmt.Errorf("%w: timeout of %d µs", ErrMalformed, us)
		}
		r.flags, r.timeout, r.ring = p[0], time.Duration(us)*time.Microsecond, binary.BigEndian.Uint64(p[9:17])
		p = p[callHeaderLen:]
		if r.flags&flagTrace != 0 {
			var err error
			if r.trace, p, err = parseTrace(p); err != nil {
				return r, err
			}
		}
	}
	if len(p) < 1 {
		return r, fmt.Errorf("%w: empty request", ErrMalformed)
	}
	ml := int(p[0])
	if ml == 0 || len(p) < 1+ml {
		return r, fmt.Errorf("%w: method length %d", ErrMalformed, ml)
	}
	r.method, r.body = string(p[1:1+ml]), p[1+ml:]
	return r, nil
}

// parseTrace reads a call's trace context: a one-byte length and the
// traceparent, then a one-byte length and the tracestate.
func parseTrace(p []byte) (TraceContext, []byte, error) {
	var tc TraceContext
	for i, f := range []*string{&tc.Parent, &tc.State} {
		if len(p) < 1 || len(p) < 1+int(p[0]) || (i == 0 && p[0] == 0) {
			return tc, nil, fmt.Errorf("%w: trace context", ErrMalformed)
		}
		*f, p = string(p[1:1+int(p[0])]), p[1+int(p[0]):]
	}
	return tc, p, nil
}

// maxTimeout is the longest deadline a call header carries; anything longer
// is sent as no deadline at all.
const maxTimeout = 100 * 365 * 24 * time.Hour

// chunkPool recycles stream chunk buffers of one size.
type chunkPool struct {
	size int
	p    sync.Pool // of *[]byte with cap size
}

// get returns a buffer of length n, pooled if n fits.
func (c *chunkPool) get(n int) []byte {
	if n > c.size {
		return make([]byte, n)
	}
	if b, ok := c.p.Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, c.size)
}

// put recycles b if it came from get.
func (c *chunkPool) put(b []byte) {
	if cap(b) == c.size {
		b = b[:0]
		c.p.Put(&b)
	}
}
