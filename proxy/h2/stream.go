package h2

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// Stream is one request and its response. The request fields are set
// before the Handler runs and not changed after.
type Stream struct {
	c *Conn

	// Method, Scheme, Authority and Path are the request's pseudo-header
	// fields (Authority falls back to the Host field); Header holds the
	// regular fields in canonical form, without Host.
	Method, Scheme, Authority, Path string
	Header                          http.Header
	// ContentLength is the declared body length, -1 if not declared.
	ContentLength int64

	ctx    context.Context
	cancel context.CancelCauseFunc
	// onReset runs (once) when the stream fails while its handler runs:
	// client reset, connection gone, protocol error. Guarded by hmu, so
	// that it never runs after the handler returned.
	hmu     sync.Mutex
	onReset func()

	// The fields are ordered to leave no padding: a Stream is 288 bytes,
	// a size class, allocated per request (see TestStreamSize).

	// flow control and receive state, guarded by c.mu (ContentLength,
	// set before the Handler runs, is the declared length checked)
	received int64
	// sent counts the body bytes taken from the send window, for the
	// minimum send rate (reserve; guarded by c.mu).
	sent    int64
	sendWin int64 // the client's window for this stream's DATA
	wfail   error // set when the stream failed
	// wait holds what only a stream that waits on its client needs:
	// the channel that ends a response write's wait for window, and the
	// time waited for the minimum data rates (rate.go). Made by the
	// first write or read that has to wait (most streams never do), in
	// the same hold of c.mu that found the window shut: whatever opens
	// it, or fails the stream, takes c.mu after and so finds the channel.
	wait        *waitState
	recvWin     int32 // DATA the client may still send
	recvUnacked int32 // read by the handler, not yet returned
	recvDone    bool  // END_STREAM received
	bodyless    bool  // the HEADERS frame ended the stream

	id uint32 // set before the Handler runs, not changed after

	// request body, guarded by bmu (eof and intr below)
	bmu      sync.Mutex
	buf      []byte
	off      int
	berr     error
	trailer  http.Header
	bodyWake chan struct{} // nil for a request without body

	// response state, the handler's goroutine only
	status    int
	head      http.Header
	headDue   bool // head recorded, not written yet
	headSent  bool
	sendDone  bool
	noBody    bool
	expect100 bool // the client waits for 100 Continue before its body

	// request body, guarded by bmu
	eof  bool
	intr bool // InterruptRead: a Read that would wait returns at once

	// noMinRate exempts the stream from the minimum data rates
	// (NoMinRate); set by the handler before its first read or write.
	noMinRate bool
}

// Context is canceled when the stream fails or ends.
func (st *Stream) Context() context.Context { return st.ctx }

// ID is the stream identifier.
func (st *Stream) ID() uint32 { return st.id }

// HasBody reports whether the request carries a body (its HEADERS did not
// end the stream).
func (st *Stream) HasBody() bool { return !st.bodyless }

// OnReset sets a function run when the stream fails (client reset,
// connection gone) before its handler returned; never after. It runs on
// the connection's reader goroutine and must not block.
func (st *Stream) OnReset(f func()) {
	st.hmu.Lock()
	st.onReset = f
	st.hmu.Unlock()
}

// Trailer returns the request trailers, valid after the body's EOF.
func (st *Stream) Trailer() http.Header {
	st.bmu.Lock()
	defer st.bmu.Unlock()
	return st.trailer
}

var errReadTimeout = errors.New("h2: request body read timed out")
var errWriteTimeout = errors.New("h2: flow-control window stayed shut")
var errStreamDone = errors.New("h2: response already ended")

// ErrReadInterrupted is what Read returns, rather than wait for DATA,
// between InterruptRead and ResumeRead.
var ErrReadInterrupted = errors.New("h2: request body read interrupted")

// InterruptRead wakes a Read that waits for the client's DATA, and makes
// Reads that would wait return ErrReadInterrupted until ResumeRead: a
// proxy whose upstream answered early stops forwarding the body without
// waiting for a client that stopped sending. Any goroutine may call it.
func (st *Stream) InterruptRead() {
	st.bmu.Lock()
	st.intr = true
	st.bmu.Unlock()
	signal(st.bodyWake)
}

// ResumeRead ends InterruptRead: Read waits for DATA again.
func (st *Stream) ResumeRead() {
	st.bmu.Lock()
	st.intr = false
	st.bmu.Unlock()
}

// Read reads the request body.
func (st *Stream) Read(p []byte) (int, error) {
	st.bmu.Lock()
	for st.off == len(st.buf) {
		if st.berr != nil {
			err := st.berr
			st.bmu.Unlock()
			return 0, err
		}
		if st.eof {
			st.bmu.Unlock()
			return 0, io.EOF
		}
		if st.intr {
			st.bmu.Unlock()
			return 0, ErrReadInterrupted
		}
		st.bmu.Unlock()
		if st.expect100 {
			st.expect100 = false
			if !st.headSent && !st.headDue {
				st.c.lockWrite()
				st.c.writeFieldsLocked(st.id, http.StatusContinue, nil, false)
				st.c.flushWanted = true
				st.c.unlockWrite()
			}
		}
		if err := st.waitBody(); err != nil {
			return 0, err
		}
		st.bmu.Lock()
	}
	n := copy(p, st.buf[st.off:])
	st.off += n
	if st.off == len(st.buf) {
		st.buf, st.off = st.buf[:0], 0
	}
	st.bmu.Unlock()
	st.consumed(n)
	return n, nil
}

// waitBody waits for the client's DATA, bounded by StreamIdleTimeout
// and by the minimum receive rate (rate.go).
func (st *Stream) waitBody() error {
	c := st.c
	var ws *waitState
	var budget time.Duration
	limited := c.cfg.MinRecvRate > 0 && !st.noMinRate
	if limited {
		c.mu.Lock()
		ws = st.waitStateLocked()
		budget, limited = st.rateBudget(c.cfg.MinRecvRate, st.received, ws.recvWaited)
		c.mu.Unlock()
	}
	waited, idleOut, slow := c.waitClient(st.bodyWake, c.cfg.StreamIdleTimeout, budget, limited)
	if ws != nil {
		ws.recvWaited += waited
	}
	switch {
	case slow:
		st.resetSlow(SlowRecv)
		return ErrTooSlow
	case idleOut:
		return errReadTimeout
	}
	return nil
}

// deliver appends DATA the reader received.
func (st *Stream) deliver(data []byte, end bool) {
	st.bmu.Lock()
	if st.berr != nil {
		st.bmu.Unlock()
		st.c.returnConnFlow(int32(len(data)))
		return
	}
	if st.off > 0 && len(st.buf)+len(data) > cap(st.buf) {
		// Move the unread part down rather than grow: a reader that never
		// quite catches up would otherwise keep every byte ever received.
		n := copy(st.buf, st.buf[st.off:])
		st.buf, st.off = st.buf[:n], 0
	}
	st.buf = append(st.buf, data...)
	if end {
		st.eof = true
	}
	st.bmu.Unlock()
	signal(st.bodyWake)
}

func (st *Stream) deliverTrailer(h http.Header) {
	st.bmu.Lock()
	st.trailer, st.eof = h, true
	st.bmu.Unlock()
	signal(st.bodyWake)
}

// consumed returns n bytes of window once read (or given up).
func (st *Stream) consumed(n int) {
	if n <= 0 {
		return
	}
	c := st.c
	c.mu.Lock()
	c.recvUnacked += int32(n)
	connInc := c.connUpdateLocked()
	var inc uint32
	if !st.recvDone && st.wfail == nil {
		st.recvUnacked += int32(n)
		if st.recvUnacked >= c.cfg.StreamWindow/4 {
			inc = uint32(st.recvUnacked)
			st.recvWin += st.recvUnacked
			st.recvUnacked = 0
		}
	}
	c.mu.Unlock()
	if connInc > 0 || inc > 0 {
		c.writeWindowUpdates(connInc, st.id, inc)
	}
}

// discardBody drops what the handler left unread, returning its window.
func (st *Stream) discardBody() {
	st.bmu.Lock()
	n := len(st.buf) - st.off
	st.buf, st.off = nil, 0
	if st.berr == nil {
		st.berr = errStreamDone
	}
	st.bmu.Unlock()
	if n > 0 {
		st.c.returnConnFlow(int32(n))
	}
}

// fail ends the stream in error: reads and writes fail, the context is
// canceled, the reset hook runs.
func (st *Stream) fail(err error, _ bool) {
	c := st.c
	c.mu.Lock()
	first := st.wfail == nil
	if first {
		st.wfail = err
	}
	var wake chan struct{} // nil: no write has waited yet; the next sees wfail
	if st.wait != nil {
		wake = st.wait.wake
	}
	c.mu.Unlock()
	if !first {
		return
	}
	st.bmu.Lock()
	if st.berr == nil || st.berr == errStreamDone {
		st.berr = err
	}
	st.bmu.Unlock()
	signal(st.bodyWake)
	signal(wake)
	st.cancel(err)
	st.hmu.Lock()
	if st.onReset != nil {
		st.onReset()
	}
	st.hmu.Unlock()
}

// wakeWriter ends a write's wait for window; c.mu is held.
func (st *Stream) wakeWriter() {
	if st.wait != nil {
		signal(st.wait.wake)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// runStream runs the handler, then closes the stream.
func (c *Conn) runStream(st *Stream) {
	defer func() {
		st.OnReset(nil) // what it refers to may be reused from now on
		if p := recover(); p != nil {
			os.Stderr.WriteString("h2: handler panic: " + strings.TrimSpace(stringOf(p)) + "\n")
			st.Reset()
		}
		c.endStream(st)
	}()
	c.handler(st)
}

func stringOf(p any) string {
	switch v := p.(type) {
	case error:
		return v.Error()
	case string:
		return v
	}
	return "panic"
}

// endStream closes a stream whose handler returned.
func (c *Conn) endStream(st *Stream) {
	if !st.sendDone {
		st.Reset()
	}
	c.mu.Lock()
	rst := false
	if c.streams[st.id] == st {
		if !st.recvDone {
			// The response is whole but the client still sends: ask it
			// to stop, without error (RFC 9113 §8.1).
			rst = true
			c.noteResetLocked(st.id)
		}
		c.removeLocked(st)
	}
	c.running--
	c.mu.Unlock()
	if rst {
		c.writeRST(st.id, http2.ErrCodeNo)
	}
	st.discardBody()
	st.cancel(errStreamDone)
	c.maybeDone()
}
