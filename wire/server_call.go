package wire

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

// serverConn is one accepted connection.
type serverConn struct {
	s   *Server
	c   net.Conn
	log *slog.Logger
	wmu sync.Mutex // serialises frame writes

	mu      sync.Mutex
	running map[uint64]context.CancelFunc // calls in flight, by call ID
	// draining: goaway is due once no call runs; goneAway: it was sent.
	draining, goneAway bool
}

// goAwayDraining is the payload of the goaway frame Drain sends.
const goAwayDraining = "draining: call again on a new connection"

// drain sends goaway now if no call runs (or force), or marks it due
// when the last one ends (untrack).
func (sc *serverConn) drain(force bool) {
	sc.mu.Lock()
	sc.draining = true
	now := sc.goAwayDue()
	if force && !sc.goneAway {
		sc.goneAway, now = true, true
	}
	sc.mu.Unlock()
	if now {
		sc.write(appendFrame(nil, frameGoAway, 0, []byte(goAwayDraining)))
	}
}

// goAwayDue, with sc.mu held, reports whether goaway must be sent now,
// and records that it is.
func (sc *serverConn) goAwayDue() bool {
	if !sc.draining || sc.goneAway || len(sc.running) > 0 {
		return false
	}
	sc.goneAway = true
	return true
}

// admit reports whether another call may run on this connection.
func (sc *serverConn) admit() bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return len(sc.running) < sc.s.cfg.MaxConcurrentCalls
}

// track makes the context of call id, which a cancel frame ends.
func (sc *serverConn) track(ctx context.Context, id uint64) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	sc.mu.Lock()
	if old := sc.running[id]; old != nil { // a reused ID: the caller gave up on the first
		old()
	}
	sc.running[id] = cancel
	sc.mu.Unlock()
	return ctx
}

func (sc *serverConn) untrack(id uint64) {
	sc.mu.Lock()
	cancel := sc.running[id]
	delete(sc.running, id)
	goAway := sc.goAwayDue()
	sc.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if goAway { // after the call's answer, which dispatch wrote
		sc.write(appendFrame(nil, frameGoAway, 0, []byte(goAwayDraining)))
	}
}

// cancel ends the context of call id, if it still runs.
func (sc *serverConn) cancel(id uint64) {
	sc.mu.Lock()
	cancel := sc.running[id]
	sc.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// refuse answers a request that found the connection full.
func (sc *serverConn) refuse(f frame) {
	sc.s.overloaded.Add(1)
	req, err := parseRequest(f)
	if err == nil {
		if st := sc.s.methods.lookup(req.method); st != nil {
			st.count(int(CodeOverloaded))
		}
	}
	msg := fmt.Sprintf("wire: %d calls in flight on this connection", sc.s.cfg.MaxConcurrentCalls)
	sc.fail(f.id, remoteFailure{code: CodeOverloaded, msg: msg})
}

// dispatch runs one request and writes its answer.
func (sc *serverConn) dispatch(ctx context.Context, f frame, arrived time.Time) {
	req, err := parseRequest(f)
	if err != nil {
		sc.fail(f.id, remoteFailure{code: CodeHandler, msg: err.Error()})
		return
	}
	e, ok := sc.s.handler(req.method)
	stream := req.flags&flagStream != 0
	if !ok || (stream && e.stream == nil) || (!stream && e.unary == nil) {
		sc.unknownMethod(f.id, req, e.stats)
		return
	}
	st := e.stats
	st.begin()
	st.received.Add(uint64(len(req.body)))
	ctx, cancel := callContext(ctx, req, arrived)
	defer cancel()
	var endSpan func(error)
	if t := sc.s.cfg.Tracer; t != nil {
		ctx, endSpan = t.StartHandler(ctx, req.method, req.trace)
	}
	class := -1
	switch {
	case ctx.Err() != nil:
		// The caller's deadline passed before the handler could start
		// (scheduling, or a timeout shorter than the trip): do not start it.
		class = sc.fail(f.id, remoteFailure{code: CodeDeadline, msg: "wire: deadline passed before the call started"})
	case stream:
		class = sc.runStream(ctx, f.id, req, e)
	default:
		class = sc.runUnary(ctx, f.id, req, e)
	}
	st.end(arrived, class)
	if endSpan != nil {
		endSpan(classError(class))
	}
}

func (sc *serverConn) unknownMethod(id uint64, req request, st *methodStats) {
	sc.s.unknown.Add(1)
	kind := "unary"
	if req.flags&flagStream != 0 {
		kind = "stream"
	}
	if st != nil { // the method exists, as the other kind
		st.count(int(CodeUnknownMethod))
	}
	sc.fail(id, remoteFailure{code: CodeUnknownMethod, msg: fmt.Sprintf("wire: no %s handler for %q", kind, req.method)})
}

// callContext gives a call its deadline (from the caller's time left,
// counted from arrival, so clocks need not agree) and ring version.
func callContext(ctx context.Context, req request, arrived time.Time) (context.Context, context.CancelFunc) {
	if req.ring != 0 {
		ctx = WithRingVersion(ctx, req.ring)
	}
	if req.timeout > 0 {
		return context.WithDeadline(ctx, arrived.Add(req.timeout))
	}
	return context.WithCancel(ctx)
}

// runUnary runs a unary handler and writes its answer; it returns the
// error class counted, or -1.
func (sc *serverConn) runUnary(ctx context.Context, id uint64, req request, e entry) int {
	var resp []byte
	err := sc.safely(req.method, func() (err error) {
		resp, err = e.unary(ctx, req.body)
		return err
	})
	switch {
	case err != nil:
		return sc.fail(id, failureFor(ctx, req, err))
	case frameLen(len(resp)) > sc.s.cfg.MaxFrameSize:
		return sc.fail(id, remoteFailure{code: CodeHandler, msg: ErrFrameTooLarge.Error() + ": response; answer with a stream"})
	}
	if sc.write(appendFrame(make([]byte, 0, frameLen(len(resp))), frameResponse, id, resp)) != nil {
		return classPeerGone
	}
	e.stats.sent.Add(uint64(len(resp)))
	return -1
}

// runStream runs a stream handler; data frames go out as it writes, and an
// end frame (or an error frame) closes the stream.
func (sc *serverConn) runStream(ctx context.Context, id uint64, req request, e entry) int {
	w := &streamWriter{sc: sc, id: id, ctx: ctx, chunk: sc.s.cfg.StreamChunkSize, stats: e.stats}
	err := sc.safely(req.method, func() error { return e.stream(ctx, req.body, w) })
	werr := w.finish()
	switch {
	case werr != nil:
		return classPeerGone // the caller's side of the stream is gone
	case err != nil:
		return sc.fail(id, failureFor(ctx, req, err))
	}
	if sc.write(appendFrame(nil, frameEnd, id)) != nil {
		return classPeerGone
	}
	return -1
}

// panicError is a recovered handler panic.
type panicError struct{ v any }

func (e panicError) Error() string { return fmt.Sprintf("wire: handler panicked: %v", e.v) }

// safely runs fn, turning a panic into a panicError so that one bad request
// never takes the server down.
func (sc *serverConn) safely(method string, fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			sc.s.panics.Add(1)
			sc.log.Error("wire: handler panicked", "method", method, "panic", v, "stack", string(debug.Stack()))
			err = panicError{v}
		}
	}()
	return fn()
}

// fail writes an error frame and returns the class it counts as.
func (sc *serverConn) fail(id uint64, f remoteFailure) int {
	if sc.write(appendFrame(nil, frameError, id, f.payload())) != nil {
		return classPeerGone
	}
	return int(f.code)
}

// write sends one whole frame; a failed write closes the connection, since a
// partial frame leaves the stream unusable.
func (sc *serverConn) write(b []byte) error {
	return sc.writeBuffers(net.Buffers{b})
}

// writeBuffers sends the concatenation of bufs as one frame, without
// copying a stream chunk into a frame buffer.
func (sc *serverConn) writeBuffers(bufs net.Buffers) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.c.SetWriteDeadline(time.Now().Add(sc.s.cfg.WriteTimeout))
	if _, err := bufs.WriteTo(sc.c); err != nil {
		sc.c.Close()
		return err
	}
	return nil
}

// streamWriter cuts a stream handler's writes into data frames.
type streamWriter struct {
	sc    *serverConn
	id    uint64
	ctx   context.Context
	chunk int
	stats *methodStats

	mu   sync.Mutex
	done bool
	err  error // the first write error; the stream is broken after it
	hdr  [4 + headerLen]byte
}

var _ io.Writer = (*streamWriter)(nil)

// Write sends p as one or more data frames.
func (w *streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.done:
		return 0, fmt.Errorf("wire: stream written after its handler returned")
	case w.err != nil:
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		if err := w.ctx.Err(); err != nil {
			return n, err
		}
		k := min(len(p), w.chunk)
		hdr := appendFrameHeader(w.hdr[:0], frameData, w.id, k)
		if err := w.sc.writeBuffers(net.Buffers{hdr, p[:k]}); err != nil {
			w.err = fmt.Errorf("wire: stream: %w (%w)", ErrPeerGone, err)
			return n, w.err
		}
		w.stats.sent.Add(uint64(k))
		n, p = n+k, p[k:]
	}
	return n, nil
}

// finish stops further writes and reports whether the stream broke.
func (w *streamWriter) finish() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	return w.err
}
