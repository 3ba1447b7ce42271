package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/pingora-go/pingora-go/internal/msgpackx"
)

// Client makes calls to peers. Unary calls to one address share one
// multiplexed connection; each stream gets a connection of its own, kept
// for the next stream when it ends cleanly (see the package doc for why).
// It is safe for concurrent use.
type Client struct {
	cfg ClientConfig

	mu     sync.Mutex
	conns  map[string]*clientConn   // the unary connection per address
	idle   map[string][]*clientConn // stream connections waiting for a stream
	live   map[*clientConn]struct{} // every connection with a reader running
	closed bool

	ctx    context.Context // cancelled by Close; bounds dials
	cancel context.CancelFunc
	wg     sync.WaitGroup

	methods           methodTable
	dials, dialErrors atomic.Uint64
	retries           atomic.Uint64 // calls sent again after a reused connection was dead
	chunks            chunkPool     // stream data frame buffers

	// shareStreams puts streams on the unary connection: the design this
	// package does not use, kept only so a benchmark can show why.
	shareStreams bool
}

// ClientStats is a snapshot of a Client's counters.
type ClientStats struct {
	Dials      uint64 // connections attempted
	DialErrors uint64 // attempts that failed
	// Retries counts calls sent once more on a new connection because
	// the reused one they were sent on was dead (see WithIdempotent).
	Retries uint64
	Methods []MethodStats
}

// NewClient returns a Client; connections are dialled on first use.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		cfg: cfg.withDefaults(), ctx: ctx, cancel: cancel, chunks: chunkPool{size: DefaultStreamChunkSize},
		conns: make(map[string]*clientConn), idle: make(map[string][]*clientConn), live: make(map[*clientConn]struct{}),
	}, nil
}

// Stats returns the client's counters. A nil Client has none.
func (c *Client) Stats() ClientStats {
	if c == nil {
		return ClientStats{}
	}
	return ClientStats{Dials: c.dials.Load(), DialErrors: c.dialErrors.Load(), Retries: c.retries.Load(), Methods: c.methods.snapshot()}
}

// Call sends req (msgpack-encoded) to method at addr and decodes the answer
// into resp (a pointer, or nil to discard). Errors: *RemoteError for what
// the peer refused (see Code), ErrPeerGone (wrapped) when addr is
// unreachable or the connection dies, the context's error on deadline or
// cancellation, ErrFrameTooLarge. ctx's deadline travels with the call: the
// handler's context ends with it, and a call whose deadline has passed is
// not sent. A call that finds its reused connection dead is sent once more
// on a new one when the peer cannot have run it, or when ctx comes from
// WithIdempotent (see there).
func (c *Client) Call(ctx context.Context, addr, method string, req, resp any) error {
	body, err := msgpack.Marshal(req)
	if err != nil {
		return fmt.Errorf("wire: %s %s: encode request: %w", addr, method, err)
	}
	out, err := c.CallRaw(ctx, addr, method, body)
	if err != nil || resp == nil {
		return err
	}
	if err := msgpackx.Unmarshal(out, resp); err != nil {
		return fmt.Errorf("wire: %s %s: decode response: %w", addr, method, err)
	}
	return nil
}

// CallRaw is Call with the request and response bodies already encoded.
func (c *Client) CallRaw(ctx context.Context, addr, method string, body []byte) ([]byte, error) {
	ctx, tc, endSpan := c.startCall(ctx, addr, method)
	st := c.methods.get(method)
	start := time.Now()
	st.begin()
	out, err := c.callRaw(ctx, addr, method, body, tc)
	if err == nil {
		st.sent.Add(uint64(len(body)))
		st.received.Add(uint64(len(out)))
	}
	st.end(start, classFor(err))
	if endSpan != nil {
		endSpan(err)
	}
	return out, err
}

func (c *Client) callRaw(ctx context.Context, addr, method string, body []byte, tc TraceContext) ([]byte, error) {
	h, err := c.prepare(ctx, addr, method, len(body), false, tc)
	if err != nil {
		return nil, err
	}
	for retried := false; ; retried = true {
		cc, err := c.conn(ctx, addr)
		if err != nil {
			return nil, err
		}
		if cc.untraced.Load() {
			h.withTrace(TraceContext{})
		}
		out, k, err := c.roundTrip(ctx, cc, h, method, body)
		if misreadTrace(err, h.trace) { // an older server: see misreadTrace
			cc.untraced.Store(true)
			h.withTrace(TraceContext{})
			out, k, err = c.roundTrip(ctx, cc, h, method, body)
		}
		if retried || !retryable(ctx, k) {
			return out, err
		}
		// A reused connection was dead (see stale): once more, on a
		// connection dialled now. The header is made again, so the
		// deadline it carries is the time left now.
		c.forget(cc)
		c.retries.Add(1)
		c.cfg.Logger.Debug("wire: reused connection was dead, calling again on a new one", "addr", addr, "method", method, "err", err)
		if h, err = c.prepare(ctx, addr, method, len(body), false, tc); err != nil {
			return nil, err
		}
	}
}

// silentAfter is how long a unary call must have waited, with nothing
// read from its connection meanwhile, for its deadline to leave that
// connection behind (roundTrip): shorter deadlines say nothing of the
// connection.
const silentAfter = 200 * time.Millisecond

// errSilent is why a connection left behind as silent failed.
var errSilent = errors.New("wire: connection silent")

// errGoAway is why a connection the peer sent goaway on failed.
var errGoAway = errors.New("peer closed the connection (goaway)")

// roundTrip sends one unary call on cc and waits for its answer. A failure
// says whether it may be retried (see stale).
func (c *Client) roundTrip(ctx context.Context, cc *clientConn, h callHeader, method string, body []byte) ([]byte, stale, error) {
	addr := cc.addr
	m := cc.mark()
	id, pc, err := cc.register(false)
	if err != nil { // dead before anything was sent
		c.forget(cc)
		k := sendFailure(m.reused, err)
		if errors.Is(err, errGoAway) || errors.Is(err, errSilent) {
			// retired (see retire) between the lookup and now: a new
			// connection may take it (nothing was sent)
			k = staleUnsent
		}
		return nil, k, fmt.Errorf("wire: %s %s: %w", addr, method, notSent{err})
	}
	if err := c.send(ctx, cc, appendCall(make([]byte, 0, callFrameLen(&h, method, len(body))), id, h, method, body)); err != nil {
		return nil, sendFailure(m.reused, err), fmt.Errorf("wire: %s %s: %w", addr, method, err)
	}
	sent := time.Now()
	select {
	case r := <-pc.ch:
		switch r.typ {
		case frameResponse:
			return r.payload, notStale, nil
		case frameError:
			return nil, notStale, decodeRemoteError(addr, method, r.payload)
		}
		cc.fail(fmt.Errorf("%w: frame type %d answering a unary call", ErrMalformed, r.typ))
		return nil, notStale, fmt.Errorf("wire: %s %s: %w: frame type %d answering a unary call", addr, method, ErrMalformed, r.typ)
	case <-pc.dead:
		c.forget(cc) // before its reader does, so the next call dials
		return nil, cc.died(m), fmt.Errorf("wire: %s %s: %w (%w)", addr, method, ErrPeerGone, pc.err)
	case <-ctx.Done():
		cc.unregister(id)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && cc.rx.Load() == m.rx && time.Since(sent) >= silentAfter {
			// Not one byte came back on the connection while this call
			// waited: after a partition TCP may keep it silent for as
			// long as its retransmission backoff (tens of seconds) while
			// a new connection works at once. The next call dials one;
			// the calls still waiting here keep their chance of an
			// answer (a peer stalled by a pause answers them late), and
			// the connection closes when they are done (retire).
			c.forgetConn(cc)
			cc.retire(fmt.Errorf("%w: nothing received for %s", errSilent, time.Since(sent).Round(time.Millisecond)))
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			// A deadline ends the handler's context by itself; a
			// cancellation has to be told. Best effort: a failed write
			// fails the connection, which cancels the handler anyway.
			c.send(context.Background(), cc, appendFrame(nil, frameCancel, id))
		}
		return nil, notStale, fmt.Errorf("wire: %s %s: %w", addr, method, ctx.Err())
	}
}

// prepare checks a call before anything is dialled or sent, and builds its
// header: the deadline as time left, the ring version, the stream flag,
// the trace context.
func (c *Client) prepare(ctx context.Context, addr, method string, body int, stream bool, tc TraceContext) (callHeader, error) {
	h := callHeader{ring: CallerRingVersion(ctx)}
	if stream {
		h.flags |= flagStream
	}
	h.withTrace(tc)
	switch {
	case method == "" || len(method) > maxMethodLen:
		return h, fmt.Errorf("wire: invalid method name %q", method)
	case callFrameLen(&h, method, body) > c.cfg.MaxFrameSize:
		return h, fmt.Errorf("wire: %s %s: %w: request of %d bytes", addr, method, ErrFrameTooLarge, body)
	case ctx.Err() != nil:
		return h, fmt.Errorf("wire: %s %s: not sent: %w", addr, method, ctx.Err())
	}
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left < time.Microsecond {
			return h, fmt.Errorf("wire: %s %s: not sent: %w", addr, method, context.DeadlineExceeded)
		}
		if left < maxTimeout {
			h.timeout = left
		}
	}
	return h, nil
}

// send writes one request frame; a failed write kills the connection,
// since a partial frame leaves the stream unusable.
func (c *Client) send(ctx context.Context, cc *clientConn, b []byte) error {
	dl := time.Now().Add(c.cfg.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	cc.wmu.Lock()
	cc.c.SetWriteDeadline(dl)
	_, err := cc.c.Write(b)
	cc.wmu.Unlock()
	if err != nil {
		cc.fail(err)
		c.forget(cc) // before its reader does, so the next call dials
		return fmt.Errorf("%w (%w)", ErrPeerGone, err)
	}
	return nil
}

// classFor is the stats class of a call's error, or -1 for none.
func classFor(err error) int {
	var re *RemoteError
	switch {
	case err == nil:
		return -1
	case errors.As(err, &re):
		if int(re.Code) < numCodes {
			return int(re.Code)
		}
		return int(CodeHandler)
	case errors.Is(err, ErrPeerGone):
		return classPeerGone
	case errors.Is(err, context.DeadlineExceeded):
		return int(CodeDeadline)
	case errors.Is(err, context.Canceled):
		return classCanceled
	}
	return classLocal
}

// conn returns the live unary connection to addr, dialling once for all
// waiters.
func (c *Client) conn(ctx context.Context, addr string) (*clientConn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	cc := c.conns[addr]
	if cc == nil {
		cc = newClientConn(addr)
		c.conns[addr] = cc
		c.wg.Add(1)
		go c.dialShared(cc)
	}
	c.mu.Unlock()
	select {
	case <-cc.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("wire: dial %s: %w", addr, ctx.Err())
	}
	if cc.err != nil {
		return nil, cc.err
	}
	return cc, nil
}

// dialShared dials the unary connection in its own goroutine, so that one
// caller giving up does not fail the others waiting for it.
func (c *Client) dialShared(cc *clientConn) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
	defer cancel()
	conn, err := c.connect(ctx, cc.addr)
	if err == nil {
		err = c.start(cc, conn)
	}
	if err != nil {
		cc.err = err
		c.forget(cc)
	}
	close(cc.ready)
}

// connect dials addr and sends the magic byte.
func (c *Client) connect(ctx context.Context, addr string) (net.Conn, error) {
	c.dials.Add(1)
	conn, err := c.cfg.Dialer.DialContext(ctx, addr)
	if err == nil {
		conn.SetWriteDeadline(time.Now().Add(c.cfg.DialTimeout))
		if _, err = conn.Write([]byte{ProtoRPC}); err != nil {
			conn.Close()
		}
	}
	if err != nil {
		c.dialErrors.Add(1)
		return nil, fmt.Errorf("wire: dial %s: %w (%w)", addr, ErrPeerGone, notSent{err})
	}
	return conn, nil
}

// start registers a dialled connection and starts its reader, unless the
// client closed meanwhile.
func (c *Client) start(cc *clientConn, conn net.Conn) error {
	cc.c = conn
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		conn.Close()
		return ErrClosed
	}
	c.live[cc] = struct{}{}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.readLoop(cc)
	}()
	return nil
}

// forgetConn stops handing cc to new calls, and keeps it among the live
// connections that Close ends.
func (c *Client) forgetConn(cc *clientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unlist(cc)
}

// forget drops every reference to cc, so the next call dials afresh.
func (c *Client) forget(cc *clientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unlist(cc)
	delete(c.live, cc)
}

// unlist, with c.mu held, takes cc off the connections calls are given:
// the shared one and the idle stream connections.
func (c *Client) unlist(cc *clientConn) {
	if c.conns[cc.addr] == cc {
		delete(c.conns, cc.addr)
	}
	idle := c.idle[cc.addr]
	for i, x := range idle {
		if x == cc {
			c.idle[cc.addr] = append(idle[:i], idle[i+1:]...)
			break
		}
	}
	if len(c.idle[cc.addr]) == 0 {
		delete(c.idle, cc.addr)
	}
}

// Close closes every connection, failing pending calls and streams with
// ErrPeerGone, and waits for the client's goroutines. It may be called more
// than once.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conns := make([]*clientConn, 0, len(c.conns)+len(c.live))
	for _, cc := range c.conns {
		conns = append(conns, cc)
	}
	for cc := range c.live {
		conns = append(conns, cc)
	}
	c.mu.Unlock()
	c.cancel()
	for _, cc := range conns {
		<-cc.ready
		if cc.c != nil {
			cc.fail(ErrClosed)
		}
	}
	c.wg.Wait()
	return nil
}
