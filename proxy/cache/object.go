package cache

import (
	"context"
	"io"
	"math"
	"sync"
	"sync/atomic"
)

// Block sizes of a body held in memory: small bodies get small blocks, a
// body of known length one exact block, and large ones 64 KiB blocks so
// none needs a large contiguous allocation.
const (
	minBlock = 4 << 10
	maxBlock = 64 << 10
)

// relayWindow is how far the slowest reader of an object that streams
// through uncached may fall behind the fill before it is cut off: the
// bound on what such a stream holds in memory.
const relayWindow = 4 << 20

// memObject is a body held in memory, readable while it is written.
type memObject struct {
	meta *Meta
	// done: the body ended whole; blocks and size no longer change, so
	// readers read without the lock.
	done atomic.Bool

	mu      sync.Mutex
	blocks  [][]byte
	dropped int   // blocks freed from the front (relay)
	base    int64 // offset of blocks[0]
	size    int64
	hint    int64 // the expected length (Content-Length), 0 if unknown
	ended   bool
	err     error // the fill failed
	relay   bool  // over its limit: streamed through, not stored
	readers map[*memReader]struct{}
	wake    chan struct{} // closed when bytes arrive or the fill ends
	waiting bool          // a reader waits on wake
	weight  int64         // set when stored
}

var (
	_ Object      = (*memObject)(nil)
	_ BlockReader = (*memReader)(nil)
)

func newMemObject(m *Meta, hint int64) *memObject {
	return &memObject{meta: m, hint: hint, wake: make(chan struct{}), readers: map[*memReader]struct{}{}}
}

// Meta returns the stored head.
func (o *memObject) Meta() *Meta { return o.meta }

// Len returns the body length once complete, else -1.
func (o *memObject) Len() int64 {
	if o.done.Load() {
		return o.size
	}
	return -1
}

// NewReader returns a reader from byte off.
func (o *memObject) NewReader(ctx context.Context, off int64) (Reader, error) {
	r := &memReader{o: o, ctx: ctx}
	if o.done.Load() {
		// A relay that ended whole holds only its tail: the bytes before
		// base are gone, and a cursor there would index a freed block.
		if off < o.base {
			return nil, ErrSlowReader
		}
		r.seek(min(off, o.size))
		return r, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return nil, o.err
	}
	if off < o.base {
		return nil, ErrSlowReader
	}
	r.seek(min(off, o.size))
	if !o.ended {
		o.readers[r] = struct{}{}
	}
	return r, nil
}

// write appends p; it runs under no lock of the caller.
func (o *memObject) write(p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(p) > 0 {
		last := len(o.blocks) - 1
		if last < 0 || len(o.blocks[last]) == cap(o.blocks[last]) {
			o.blocks = append(o.blocks, make([]byte, 0, o.nextBlock(len(p))))
			last++
		}
		b := o.blocks[last]
		n := min(len(p), cap(b)-len(b))
		o.blocks[last] = append(b, p[:n]...)
		p = p[n:]
		o.size += int64(n)
	}
	if o.relay {
		o.trimLocked()
	}
	o.signalLocked()
}

// nextBlock sizes a new block: the whole expected body when known, else
// double the last, between minBlock and maxBlock.
func (o *memObject) nextBlock(need int) int {
	if o.size == 0 && o.hint > 0 && o.hint <= 1<<30 {
		return int(o.hint)
	}
	n := minBlock
	if k := len(o.blocks); k > 0 {
		n = min(max(2*cap(o.blocks[k-1]), minBlock), maxBlock)
	}
	return max(n, min(need, maxBlock))
}

// startRelay turns the object into a stream that is not stored: from now
// on only what its readers still need is held.
func (o *memObject) startRelay() {
	o.mu.Lock()
	o.relay = true
	o.trimLocked()
	o.mu.Unlock()
}

// trimLocked frees the blocks every reader has passed and cuts off the
// readers more than relayWindow behind.
func (o *memObject) trimLocked() {
	low := o.size
	for r := range o.readers {
		if o.size-r.off > relayWindow {
			r.err = ErrSlowReader
			delete(o.readers, r)
			continue
		}
		low = min(low, r.off)
	}
	for len(o.blocks) > 1 && o.base+int64(len(o.blocks[0])) <= low {
		o.base += int64(len(o.blocks[0]))
		o.blocks[0] = nil
		o.blocks = o.blocks[1:]
		o.dropped++
	}
	if len(o.blocks) == 1 && o.base+int64(len(o.blocks[0])) <= low && len(o.blocks[0]) == cap(o.blocks[0]) {
		o.base += int64(len(o.blocks[0]))
		o.blocks, o.dropped = nil, o.dropped+1
	}
}

// end finishes the body: whole when err is nil.
func (o *memObject) end(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended {
		return
	}
	o.ended, o.err = true, err
	o.readers = nil
	if err == nil {
		o.done.Store(true)
	}
	o.signalLocked()
}

func (o *memObject) signalLocked() {
	if o.waiting {
		close(o.wake)
		o.wake = make(chan struct{})
		o.waiting = false
	}
}

// withMeta returns a complete object with a new head over the same body.
func (o *memObject) withMeta(m *Meta) *memObject {
	c := &memObject{meta: m, blocks: o.blocks, size: o.size, ended: true}
	c.done.Store(true)
	return c
}

// memReader reads a memObject from its cursor: an absolute offset, and the
// block and position in it.
type memReader struct {
	o   *memObject
	ctx context.Context
	off int64
	bi  int   // block index, counting dropped blocks
	bo  int   // offset in the block
	err error // cut off (relay); guarded by o.mu until the object ends
}

// seek places the cursor at off (off >= base, <= size), under o.mu or on a
// complete object.
func (r *memReader) seek(off int64) {
	o := r.o
	r.off, r.bi, r.bo = off, o.dropped, 0
	pos := o.base
	for i, b := range o.blocks {
		if off < pos+int64(len(b)) || i == len(o.blocks)-1 {
			r.bi, r.bo = o.dropped+i, int(off-pos)
			return
		}
		pos += int64(len(b))
	}
}

// next returns the held bytes at the cursor, at most n of them, as a
// slice of their block, and moves the cursor past them; nil when nothing
// is held past it. It runs under o.mu or on a complete object.
func (r *memReader) next(n int) []byte {
	o := r.o
	if r.bi < o.dropped {
		// The relay freed the block the cursor ended (it stood at that
		// block's end): the bytes at off start a block still held.
		r.seek(r.off)
	}
	for n > 0 && r.off < o.size {
		b := o.blocks[r.bi-o.dropped]
		if r.bo >= len(b) {
			r.bi, r.bo = r.bi+1, 0
			continue
		}
		b = b[r.bo:min(len(b), r.bo+n)]
		r.bo, r.off = r.bo+len(b), r.off+int64(len(b))
		return b[:len(b):len(b)]
	}
	return nil
}

// copyOut copies what is held from the cursor into p.
func (r *memReader) copyOut(p []byte) int {
	n := 0
	for n < len(p) {
		b := r.next(len(p) - n)
		if b == nil {
			break
		}
		n += copy(p[n:], b)
	}
	return n
}

// Blocks appends the held bytes from the cursor on, at most n (n < 0:
// all), to dst as slices of the object's blocks. A block's bytes never
// change once written (a write appends past them), and a block the relay
// drops stays alive while a slice of it does. A reader the relay cut
// off gets ErrSlowReader, also once the object ended whole: its Len then
// says complete, but the bytes this reader still needed are gone.
func (r *memReader) Blocks(dst [][]byte, n int64) ([][]byte, error) {
	o := r.o
	if !o.done.Load() {
		o.mu.Lock()
		defer o.mu.Unlock()
	}
	if r.err != nil {
		return dst, r.err
	}
	if n < 0 || n > o.size-r.off {
		n = o.size - r.off
	}
	for n > 0 {
		b := r.next(int(min(n, math.MaxInt32)))
		if b == nil {
			break
		}
		dst = append(dst, b)
		n -= int64(len(b))
	}
	return dst, nil
}

// Read returns held bytes, waits for more while the fill runs, and fails
// when the fill failed or left this reader behind.
func (r *memReader) Read(p []byte) (int, error) {
	o := r.o
	if o.done.Load() {
		if r.err != nil {
			return 0, r.err
		}
		if n := r.copyOut(p); n > 0 {
			return n, nil
		}
		return 0, io.EOF
	}
	for {
		n, wait, err := r.readLocked(p)
		switch {
		case wait == nil && n == 0 && err == nil:
			return r.Read(p) // it ended whole: read without the lock
		case wait == nil:
			return n, err
		}
		select {
		case <-wait:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

// readLocked is one try of Read under the object's lock: n bytes or an
// error, a channel to wait on for more, or nothing of the three once the
// fill ended whole. The lock goes by defer, so that a panic here (a bug)
// fails one request instead of holding the object, its fill and every
// reader for good.
func (r *memReader) readLocked(p []byte) (int, chan struct{}, error) {
	o := r.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.err != nil {
		return 0, nil, r.err
	}
	if n := r.copyOut(p); n > 0 {
		return n, nil, nil
	}
	if o.ended {
		return 0, nil, o.err
	}
	o.waiting = true
	return 0, o.wake, nil
}

// Buffered returns the bytes held past the cursor.
func (r *memReader) Buffered() int {
	o := r.o
	if !o.done.Load() {
		o.mu.Lock()
		defer o.mu.Unlock()
	}
	return int(min(o.size-r.off, math.MaxInt32))
}

// Close stops holding bytes for this reader.
func (r *memReader) Close() error {
	o := r.o
	if o.done.Load() {
		return nil
	}
	o.mu.Lock()
	delete(o.readers, r)
	o.mu.Unlock()
	return nil
}

// Pipe is a body in no store: written by one goroutine, read as it is
// written by any number of readers, like a fill's object. A cache that
// hands on a response it will not keep (the cluster tier passing on a
// stale object from its owner) streams it through a Pipe. Past limit
// bytes it holds only what its readers still need, and cuts a reader
// that falls behind, as an object over its limit does.
type Pipe struct {
	o       *memObject
	limit   int64
	written int64
}

// NewPipe returns a Pipe with head m and nothing written; limit <= 0
// means no limit.
func NewPipe(m *Meta, limit int64) *Pipe {
	return &Pipe{o: newMemObject(m, 0), limit: limit}
}

// Object returns the object its readers read.
func (p *Pipe) Object() Object { return p.o }

// Write appends body bytes.
func (p *Pipe) Write(b []byte) (int, error) {
	p.written += int64(len(b))
	if p.limit > 0 && p.written > p.limit && !p.o.relay {
		p.o.startRelay()
	}
	p.o.write(b)
	return len(b), nil
}

// Close ends the body whole; CloseWithError fails its readers with err
// (ErrIncomplete when nil).
func (p *Pipe) Close() { p.o.end(nil) }

// CloseWithError ends the body as failed.
func (p *Pipe) CloseWithError(err error) {
	if err == nil {
		err = ErrIncomplete
	}
	p.o.end(err)
}
