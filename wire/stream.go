package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// errStreamClosed is returned by Read after Close.
var errStreamClosed = errors.New("wire: read on closed stream")

// CallStream sends req (msgpack-encoded) to a stream method at addr and
// returns its answer as a reader. The stream has a connection of its own,
// so a slow reader or a large body never delays other calls to addr.
//
// Errors the peer reports before the first byte (unknown method, not the
// owner, overloaded, deadline, a handler error) come back from CallStream.
// After that, Read returns the body and then io.EOF only if the peer ended
// the stream cleanly; a handler error, a dead peer or ctx ending mid-stream
// make Read fail, so a cut body never looks whole. ctx bounds the whole
// stream. Close the reader when done: closing early drops the connection.
// Read and Close are for one goroutine; cancel ctx to stop a blocked Read.
// A reader that stops reading for the server's WriteTimeout (10s by
// default) has its stream cut, so a stalled caller cannot pin a handler.
func (c *Client) CallStream(ctx context.Context, addr, method string, req any) (io.ReadCloser, error) {
	body, err := msgpack.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("wire: %s %s: encode request: %w", addr, method, err)
	}
	ctx, tc, endSpan := c.startCall(ctx, addr, method)
	r, err := c.openStream(ctx, addr, method, body, tc)
	if misreadTrace(err, r.trace) { // an older server: see misreadTrace
		r.cc.untraced.Store(true)
		r, err = c.openStream(ctx, addr, method, body, TraceContext{})
	}
	if err != nil {
		if endSpan != nil {
			endSpan(err)
		}
		return nil, err
	}
	if r.err != nil { // io.EOF: an empty stream, already ended
		if endSpan != nil {
			endSpan(nil)
		}
		return r, nil
	}
	r.endSpan = endSpan
	return r, nil
}

// openStream sends a stream call and waits for its first frame. A call
// whose reused connection was dead is sent once more on a new one (see
// stale).
func (c *Client) openStream(ctx context.Context, addr, method string, body []byte, tc TraceContext) (*streamReader, error) {
	st := c.methods.get(method)
	r := &streamReader{c: c, ctx: ctx, addr: addr, method: method, st: st, start: time.Now()}
	st.begin()
	k, err := r.open(body, tc, false)
	opened := err == nil
	if opened {
		k, err = r.first()
	}
	if err != nil && retryable(ctx, k) {
		r.cc.fail(err)
		c.forget(r.cc)
		c.retries.Add(1)
		c.cfg.Logger.Debug("wire: reused connection was dead, calling again on a new one", "addr", addr, "method", method, "err", err)
		r.cc, r.pc, r.id = nil, nil, 0
		_, err = r.open(body, tc, true)
		if opened = err == nil; opened {
			err = r.waitFirst()
		}
	}
	if opened {
		st.sent.Add(uint64(len(body)))
		st.observe(time.Since(r.start))
	}
	if err != nil && r.err == nil { // not finished by a frame or the wait
		r.finish(err, false)
	}
	return r, err
}

// first waits for the stream's first frame, as waitFirst does, but leaves
// a connection that died first unfinished, with how it died, so that
// openStream may retry.
func (r *streamReader) first() (stale, error) {
	select {
	case res := <-r.pc.ch:
		r.frame(res)
	case <-r.pc.dead:
		if k := r.cc.died(r.sent); k != notStale {
			return k, r.cut()
		}
		r.finish(r.cut(), false)
	case <-r.ctx.Done():
		r.finish(fmt.Errorf("wire: %s %s: %w", r.addr, r.method, r.ctx.Err()), false)
	}
	return notStale, r.waitFirst()
}

// waitFirst waits until the stream has its first data, or has ended.
func (r *streamReader) waitFirst() error {
	for len(r.buf) == 0 && r.err == nil {
		r.next()
	}
	if r.err != nil && r.err != io.EOF {
		return r.err
	}
	return nil
}

// streamReader reads a stream's frames as a byte stream.
type streamReader struct {
	c      *Client
	ctx    context.Context
	addr   string
	method string
	st     *methodStats
	start  time.Time

	cc    *clientConn
	id    uint64
	pc    *pendingCall
	buf   []byte // what is left of the current data frame
	chunk []byte // the current data frame's buffer, recycled once read
	err   error  // sticky: io.EOF after a clean end, or the failure

	trace   TraceContext // what the call carried
	sent    mark         // the connection as the call was sent on it
	endSpan func(error)  // ends the caller's span at the stream's end (nil: none)
}

// open gets a stream connection (a new one if fresh) and sends the call.
// A failure says whether it may be retried (see stale).
func (r *streamReader) open(body []byte, tc TraceContext, fresh bool) (stale, error) {
	h, err := r.c.prepare(r.ctx, r.addr, r.method, len(body), true, tc)
	if err != nil {
		return notStale, err
	}
	if r.cc, err = r.c.streamConn(r.ctx, r.addr, fresh); err != nil {
		return notStale, err
	}
	if r.cc.untraced.Load() {
		h.withTrace(TraceContext{})
	}
	r.trace = h.trace
	r.sent = r.cc.mark()
	if r.id, r.pc, err = r.cc.register(true); err != nil {
		return sendFailure(r.sent.reused, err), fmt.Errorf("wire: %s %s: %w", r.addr, r.method, err)
	}
	b := appendCall(make([]byte, 0, callFrameLen(&h, r.method, len(body))), r.id, h, r.method, body)
	if err := r.c.send(r.ctx, r.cc, b); err != nil {
		return sendFailure(r.sent.reused, err), fmt.Errorf("wire: %s %s: %w", r.addr, r.method, err)
	}
	return notStale, nil
}

// Read implements io.Reader.
func (r *streamReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.next()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	if len(r.buf) == 0 {
		r.recycle()
	}
	return n, nil
}

// recycle hands the current data frame's buffer back to the pool.
func (r *streamReader) recycle() {
	if r.chunk != nil {
		r.c.chunks.put(r.chunk)
		r.chunk, r.buf = nil, nil
	}
}

// next waits for the stream's next frame.
func (r *streamReader) next() {
	select {
	case res := <-r.pc.ch:
		r.frame(res)
	case <-r.pc.dead:
		r.finish(r.cut(), false)
	case <-r.ctx.Done():
		r.finish(fmt.Errorf("wire: %s %s: %w", r.addr, r.method, r.ctx.Err()), false)
	}
}

// frame takes one frame of the stream.
func (r *streamReader) frame(res result) {
	switch res.typ {
	case frameData:
		r.buf, r.chunk = res.payload, res.payload
		r.st.received.Add(uint64(len(res.payload)))
	case frameEnd:
		r.finish(io.EOF, true)
	case frameError:
		r.finish(decodeRemoteError(r.addr, r.method, res.payload), true)
	default:
		r.finish(fmt.Errorf("wire: %s %s: %w: frame type %d in a stream", r.addr, r.method, ErrMalformed, res.typ), false)
	}
}

// cut is the error of a stream whose connection died. A connection that
// closed between two frames died of io.EOF; the stream's error says
// io.ErrUnexpectedEOF instead, so that no reader testing errors.Is(err,
// io.EOF) takes a cut stream for one that ended.
func (r *streamReader) cut() error {
	cause := r.pc.err
	if errors.Is(cause, io.EOF) {
		cause = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("wire: %s %s: stream cut: %w (%w)", r.addr, r.method, ErrPeerGone, cause)
}

// finish ends the stream with err (io.EOF when clean), counts it, and either
// keeps the connection for the next stream (clean: the peer sent its last
// frame) or drops it.
func (r *streamReader) finish(err error, clean bool) {
	r.recycle()
	r.err, r.buf = err, nil
	class := -1
	if err != io.EOF {
		class = classFor(err)
	}
	if end := r.endSpan; end != nil {
		r.endSpan = nil
		if class < 0 {
			end(nil)
		} else {
			end(err)
		}
	}
	r.st.inFlight.Add(-1)
	r.st.count(class)
	if r.cc == nil {
		return
	}
	if r.pc != nil && !clean {
		close(r.pc.abandoned)
	}
	if clean {
		r.c.release(r.cc)
	} else {
		r.cc.fail(err)
	}
}

// Close stops the stream. Closing before io.EOF drops the connection, which
// ends the handler's context at the peer.
func (r *streamReader) Close() error {
	if r.err == nil {
		r.finish(fmt.Errorf("wire: %s %s: %w", r.addr, r.method, context.Canceled), false)
	}
	r.err = errStreamClosed
	return nil
}

// streamConn returns an idle stream connection to addr or, or when fresh,
// dials one.
func (c *Client) streamConn(ctx context.Context, addr string, fresh bool) (*clientConn, error) {
	if c.shareStreams {
		return c.conn(ctx, addr)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	for idle := c.idle[addr]; len(idle) > 0 && !fresh; idle = c.idle[addr] {
		cc := idle[len(idle)-1]
		c.idle[addr] = idle[:len(idle)-1]
		if cc.usable() {
			c.mu.Unlock()
			return cc, nil
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel) // Close ends a dial in progress
	defer stop()
	conn, err := c.connect(ctx, addr)
	if err != nil {
		return nil, err
	}
	cc := newClientConn(addr)
	close(cc.ready)
	if err := c.start(cc, conn); err != nil {
		return nil, err
	}
	return cc, nil
}

// release keeps a stream connection whose stream ended cleanly for the next
// stream, up to MaxIdleStreamConns per address, and closes it otherwise.
func (c *Client) release(cc *clientConn) {
	if c.shareStreams {
		return
	}
	c.mu.Lock()
	_, live := c.live[cc]
	keep := live && !c.closed && len(c.idle[cc.addr]) < c.cfg.MaxIdleStreamConns && cc.usable()
	if keep {
		c.idle[cc.addr] = append(c.idle[cc.addr], cc)
	}
	c.mu.Unlock()
	if !keep {
		cc.fail(errors.New("wire: idle stream connection not kept"))
	}
}
