package wire

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Client makes calls to peers, keeping one multiplexed connection per
// address. It is safe for concurrent use.
type Client struct {
	cfg ClientConfig

	mu     sync.Mutex
	conns  map[string]*clientConn
	closed bool

	ctx    context.Context // cancelled by Close; bounds dials
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewClient returns a Client; connections are dialled on first use.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{cfg: cfg.withDefaults(), conns: make(map[string]*clientConn), ctx: ctx, cancel: cancel}, nil
}

// result is what the reader hands a pending call.
type result struct {
	typ     byte
	payload []byte
	err     error
}

// clientConn is one connection to one address, shared by all calls to it.
type clientConn struct {
	addr  string
	ready chan struct{} // closed when the dial finished (c or err set)
	c     net.Conn
	err   error // dial error, read-only after ready

	wmu sync.Mutex // serialises frame writes

	mu      sync.Mutex
	pending map[uint64]chan result
	dead    error
	nextID  atomic.Uint64
}

// Call sends req (msgpack-encoded) to method at addr and decodes the answer
// into resp (a pointer, or nil to discard). Errors: *RemoteError for handler
// errors, ErrPeerGone (wrapped) when addr is unreachable or the connection
// dies, the context's error on deadline or cancellation, ErrFrameTooLarge.
func (c *Client) Call(ctx context.Context, addr, method string, req, resp any) error {
	body, err := msgpack.Marshal(req)
	if err != nil {
		return fmt.Errorf("wire: %s %s: encode request: %w", addr, method, err)
	}
	out, err := c.CallRaw(ctx, addr, method, body)
	if err != nil || resp == nil {
		return err
	}
	if err := msgpack.Unmarshal(out, resp); err != nil {
		return fmt.Errorf("wire: %s %s: decode response: %w", addr, method, err)
	}
	return nil
}

// CallRaw is Call with the request and response bodies already encoded.
func (c *Client) CallRaw(ctx context.Context, addr, method string, body []byte) ([]byte, error) {
	if method == "" || len(method) > maxMethodLen {
		return nil, fmt.Errorf("wire: invalid method name %q", method)
	}
	if frameLen(1+len(method)+len(body)) > c.cfg.MaxFrameSize {
		return nil, fmt.Errorf("wire: %s %s: %w: request of %d bytes", addr, method, ErrFrameTooLarge, len(body))
	}
	cc, err := c.conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	id := cc.nextID.Add(1)
	ch := make(chan result, 1) // the reader never blocks delivering
	if err := cc.register(id, ch); err != nil {
		return nil, fmt.Errorf("wire: %s %s: %w", addr, method, err)
	}
	frame := appendFrame(make([]byte, 0, frameLen(1+len(method)+len(body))), frameRequest, id, []byte{byte(len(method))}, []byte(method), body)
	if err := ctx.Err(); err != nil {
		cc.unregister(id)
		return nil, fmt.Errorf("wire: %s %s: %w", addr, method, err)
	}
	if err := c.write(ctx, cc, frame); err != nil {
		cc.fail(err)
		c.drop(cc)
		return nil, fmt.Errorf("wire: %s %s: %w (%w)", addr, method, ErrPeerGone, err)
	}
	select {
	case r := <-ch:
		switch {
		case r.err != nil:
			return nil, fmt.Errorf("wire: %s %s: %w", addr, method, r.err)
		case r.typ == frameError:
			return nil, decodeRemoteError(addr, method, r.payload)
		}
		return r.payload, nil
	case <-ctx.Done():
		cc.unregister(id)
		return nil, fmt.Errorf("wire: %s %s: %w", addr, method, ctx.Err())
	}
}

func (c *Client) write(ctx context.Context, cc *clientConn, b []byte) error {
	dl := time.Now().Add(c.cfg.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	cc.c.SetWriteDeadline(dl)
	_, err := cc.c.Write(b)
	return err
}

// conn returns the live connection to addr, dialling once for all waiters.
func (c *Client) conn(ctx context.Context, addr string) (*clientConn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	cc := c.conns[addr]
	if cc == nil {
		cc = &clientConn{addr: addr, ready: make(chan struct{}), pending: make(map[uint64]chan result)}
		c.conns[addr] = cc
		c.wg.Add(1)
		go c.dial(cc)
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

// dial connects, sends the magic byte and starts the reader. It runs in its
// own goroutine so that one caller giving up does not fail the others.
func (c *Client) dial(cc *clientConn) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
	defer cancel()
	conn, err := c.cfg.Dialer.DialContext(ctx, cc.addr)
	if err == nil {
		conn.SetWriteDeadline(time.Now().Add(c.cfg.DialTimeout))
		if _, err = conn.Write([]byte{ProtoRPC}); err != nil {
			conn.Close()
		}
	}
	if err != nil {
		cc.err = fmt.Errorf("wire: dial %s: %w (%w)", cc.addr, ErrPeerGone, err)
		c.drop(cc)
		close(cc.ready)
		return
	}
	cc.c = conn
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.wg.Add(1)
	}
	c.mu.Unlock()
	if closed {
		conn.Close()
		cc.err = ErrClosed
		close(cc.ready)
		return
	}
	close(cc.ready)
	go func() {
		defer c.wg.Done()
		c.readLoop(cc)
	}()
}

// readLoop delivers responses to pending calls until the connection fails,
// then fails every pending call at once.
func (c *Client) readLoop(cc *clientConn) {
	br := bufio.NewReader(cc.c)
	for {
		f, err := readFrame(br, c.cfg.MaxFrameSize)
		if err == nil && (f.typ == frameRequest || f.typ == frameGoAway) {
			err = fmt.Errorf("%w: frame type %d from server: %q", ErrMalformed, f.typ, f.payload)
		}
		if err != nil {
			c.cfg.Logger.Debug("wire: connection lost", "addr", cc.addr, "err", err)
			cc.fail(err)
			c.drop(cc)
			return
		}
		cc.deliver(f)
	}
}

// drop forgets cc so the next call dials afresh.
func (c *Client) drop(cc *clientConn) {
	c.mu.Lock()
	if c.conns[cc.addr] == cc {
		delete(c.conns, cc.addr)
	}
	c.mu.Unlock()
}

// Close closes every connection, failing pending calls with ErrPeerGone, and
// waits for the client's goroutines. It may be called more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conns := make([]*clientConn, 0, len(c.conns))
	for _, cc := range c.conns {
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

func (cc *clientConn) register(id uint64, ch chan result) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.dead != nil {
		return fmt.Errorf("%w (%w)", ErrPeerGone, cc.dead)
	}
	cc.pending[id] = ch
	return nil
}

func (cc *clientConn) unregister(id uint64) {
	cc.mu.Lock()
	delete(cc.pending, id)
	cc.mu.Unlock()
}

func (cc *clientConn) deliver(f frame) {
	cc.mu.Lock()
	ch := cc.pending[f.id]
	delete(cc.pending, f.id)
	cc.mu.Unlock()
	if ch != nil { // nil: the caller gave up already
		ch <- result{typ: f.typ, payload: f.payload}
	}
}

// fail marks cc dead, closes it and fails every pending call.
func (cc *clientConn) fail(cause error) {
	cc.mu.Lock()
	if cc.dead != nil {
		cc.mu.Unlock()
		return
	}
	cc.dead = cause
	pending := cc.pending
	cc.pending = nil
	cc.mu.Unlock()
	cc.c.Close()
	for _, ch := range pending {
		ch <- result{err: fmt.Errorf("%w (%w)", ErrPeerGone, cause)}
	}
}
