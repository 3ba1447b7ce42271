package wire

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// clientConn is one connection to one address: the unary connection shared
// by all calls to it, or a stream connection carrying one stream at a time.
type clientConn struct {
	addr  string
	ready chan struct{} // closed when the dial finished (c or err set)
	c     net.Conn
	err   error // dial error, read-only after ready

	wmu sync.Mutex // serialises frame writes

	mu      sync.Mutex
	pending map[uint64]*pendingCall
	dead    error
	// retired is set when the client stopped giving cc new calls (see
	// retire): cc closes, failing with it, once its last call has ended.
	retired error
	nextID  atomic.Uint64
	// untraced is set once the peer showed it reads no trace context (a
	// version before it): calls on this connection carry none.
	untraced atomic.Bool
	// rx counts the bytes read from the connection, and reused is set
	// once it delivered a frame to a call: together they tell a call that
	// failed on a connection kept from before, with nothing back since
	// it was sent, from any other failure (see stale).
	rx     atomic.Uint64
	reused atomic.Bool
}

// mark is what a call notes before it sends: whether its connection was
// reused, and the bytes read from it so far.
type mark struct {
	reused bool
	rx     uint64
}

func (cc *clientConn) mark() mark { return mark{reused: cc.reused.Load(), rx: cc.rx.Load()} }

// died is how a call sent after m counts when its connection died before
// answering it: staleUnanswered if the connection was reused and nothing
// came back on it since.
func (cc *clientConn) died(m mark) stale {
	if m.reused && cc.rx.Load() == m.rx {
		return staleUnanswered
	}
	return notStale
}

// countingReader counts the bytes read from a client connection.
type countingReader struct{ cc *clientConn }

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.cc.c.Read(p)
	r.cc.rx.Add(uint64(n))
	return n, err
}

func newClientConn(addr string) *clientConn {
	return &clientConn{addr: addr, ready: make(chan struct{}), pending: make(map[uint64]*pendingCall)}
}

// result is a frame the reader hands a pending call.
type result struct {
	typ     byte
	payload []byte
}

// pendingCall is a call waiting for its answer. A unary call gets one
// result; a stream gets its data frames, then an end or error frame.
type pendingCall struct {
	ch     chan result
	stream bool
	// abandoned is closed by a stream's reader when it stops reading
	// before the end, so the connection's reader never blocks on it.
	abandoned chan struct{}
	// dead is closed when the connection died first; err says why.
	dead chan struct{}
	err  error
}

// streamQueue is how many data frames (of up to StreamChunkSize) the reader
// of a stream connection buffers ahead of the caller's Read. Past it, the
// connection's reader stops and TCP pushes back on the peer: the stream has
// the connection to itself, so nothing else waits behind it.
const streamQueue = 4

// register adds a pending call with a fresh ID.
func (cc *clientConn) register(stream bool) (uint64, *pendingCall, error) {
	pc := &pendingCall{ch: make(chan result, 1), stream: stream, dead: make(chan struct{})} // unary: one answer, never blocks the reader
	if stream {
		pc.ch = make(chan result, streamQueue)
		pc.abandoned = make(chan struct{})
	}
	id := cc.nextID.Add(1)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.dead != nil {
		return 0, nil, fmt.Errorf("%w (%w)", ErrPeerGone, cc.dead)
	}
	cc.pending[id] = pc
	return id, pc, nil
}

func (cc *clientConn) unregister(id uint64) {
	cc.mu.Lock()
	delete(cc.pending, id)
	done := cc.retiredIdle()
	cc.mu.Unlock()
	if done != nil {
		cc.fail(done)
	}
}

// retiredIdle, with cc.mu held, is why cc must close now: it was retired
// and its last call has ended. Nil otherwise.
func (cc *clientConn) retiredIdle() error {
	if cc.retired != nil && cc.dead == nil && len(cc.pending) == 0 {
		return cc.retired
	}
	return nil
}

// retireLinger bounds how long a retired connection stays open for the
// calls still on it: a call without a deadline must not keep a
// connection that may be dead for good.
var retireLinger = 5 * time.Second

// retire marks cc as taking no new calls (the client has forgotten it
// already): it closes when its last call ends, or after retireLinger,
// failing the calls still on it with cause.
func (cc *clientConn) retire(cause error) {
	cc.mu.Lock()
	if cc.dead != nil || cc.retired != nil {
		cc.mu.Unlock()
		return
	}
	cc.retired = cause
	done := cc.retiredIdle()
	cc.mu.Unlock()
	if done != nil {
		cc.fail(done)
		return
	}
	time.AfterFunc(retireLinger, func() { cc.fail(cause) })
}

// deliver hands f to its call. A stream's data frames keep the call
// pending; any other frame finishes it.
func (cc *clientConn) deliver(f frame) {
	cc.mu.Lock()
	pc := cc.pending[f.id]
	if pc != nil && (!pc.stream || f.typ != frameData) {
		delete(cc.pending, f.id)
	}
	done := cc.retiredIdle()
	cc.mu.Unlock()
	if !cc.reused.Load() {
		cc.reused.Store(true)
	}
	switch {
	case pc == nil: // the caller gave up already
	case !pc.stream:
		pc.ch <- result{typ: f.typ, payload: f.payload}
	default:
		select {
		case pc.ch <- result{typ: f.typ, payload: f.payload}:
		case <-pc.abandoned:
		}
	}
	if done != nil {
		cc.fail(done)
	}
}

// fail marks cc dead, closes it and fails every pending call.
func (cc *clientConn) fail(cause error) {
	cc.mu.Lock()
	if cc.dead != nil {
		cc.mu.Unlock()
		return
	}
	if cc.retired != nil && cc.retired != cause {
		// why it was retired (a goaway's reason) says more than how it
		// ended (the peer closing it after its goaway)
		cause = fmt.Errorf("%w; then: %v", cc.retired, cause)
	}
	cc.dead = cause
	pending := cc.pending
	cc.pending = nil
	cc.mu.Unlock()
	cc.c.Close()
	for _, pc := range pending {
		pc.err = cause
		close(pc.dead)
	}
}

// usable reports whether cc may take a new call: not failed, not retired.
func (cc *clientConn) usable() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.dead == nil && cc.retired == nil
}

// readLoop delivers answers to pending calls until the connection fails,
// then fails every pending call at once.
func (c *Client) readLoop(cc *clientConn) {
	defer c.forget(cc)
	br := bufio.NewReader(countingReader{cc})
	for {
		f, err := readFrameBuf(br, c.cfg.MaxFrameSize, &c.chunks, nil)
		switch {
		case err != nil:
		case f.typ == frameGoAway:
			// No new call goes here; the calls sent before the peer's
			// goaway are answered (a draining server sends it when none
			// runs, so those are the calls that crossed it), then the
			// connection closes. After a protocol error the peer
			// closes it itself, failing them.
			c.forgetConn(cc)
			cc.retire(fmt.Errorf("%w: %s", errGoAway, f.payload))
			continue
		case f.typ == frameRequest || f.typ == frameCall:
			err = fmt.Errorf("%w: frame type %d from server", ErrMalformed, f.typ)
		}
		if err != nil {
			c.cfg.Logger.Debug("wire: connection lost", "addr", cc.addr, "err", err)
			cc.fail(err)
			return
		}
		cc.deliver(f)
	}
}
