package wire_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/wire"
)

// How a server connection of a staleListener dies, when told to.
const (
	alive int32 = iota
	// resetOnRequest: the next bytes that arrive reset the connection
	// unread, as a restarted peer's kernel answers a connection it no
	// longer knows. The handler never runs.
	resetOnRequest
	// resetOnAnswer: the handler runs, and the connection is reset
	// instead of its answer: the peer died between the two.
	resetOnAnswer
)

// staleListener is a loopback listener whose connections the test can
// make die only when the client next writes, so that the client's pooled
// connection looks alive until it is used.
type staleListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*staleConn
	// onNew is the mode of connections accepted from now on.
	onNew atomic.Int32
}

type staleConn struct {
	net.Conn
	mode atomic.Int32
}

func listenStale(t *testing.T) *staleListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &staleListener{Listener: l}
}

func (l *staleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &staleConn{Conn: c}
	sc.mode.Store(l.onNew.Load())
	l.mu.Lock()
	l.conns = append(l.conns, sc)
	l.mu.Unlock()
	return sc, nil
}

// kill makes every connection accepted so far die as mode says.
func (l *staleListener) kill(mode int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.mode.Store(mode)
	}
}

var errTestReset = errors.New("test: connection reset")

func (c *staleConn) reset() {
	c.Conn.(*net.TCPConn).SetLinger(0) // close with RST, not FIN
	c.Conn.Close()
}

func (c *staleConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.mode.Load() == resetOnRequest {
		c.reset()
		return 0, errTestReset
	}
	return n, err
}

func (c *staleConn) Write(p []byte) (int, error) {
	if c.mode.Load() == resetOnAnswer {
		c.reset()
		return 0, errTestReset
	}
	return c.Conn.Write(p)
}

// retryPair is a TCP server with a counting method "count" and a stream
// method "sum", and a client; dialled counts the client's connections, and
// failWrite makes the client's next write on its connections so far fail.
type retryPair struct {
	l    *staleListener
	addr string
	cl   *wire.Client
	ran  atomic.Int64 // runs of "count" and "sum"

	mu    sync.Mutex
	conns []*failWriteConn
}

type failWriteConn struct {
	net.Conn
	fail atomic.Bool
}

func (c *failWriteConn) Write(p []byte) (int, error) {
	if c.fail.CompareAndSwap(true, false) {
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}
	}
	return c.Conn.Write(p)
}

func newRetryPair(t *testing.T) *retryPair {
	t.Helper()
	p := &retryPair{l: listenStale(t)}
	p.addr = p.l.Addr().String()
	srv := newServer(t, wire.ServerConfig{})
	srv.Handle("count", func(context.Context, []byte) ([]byte, error) {
		p.ran.Add(1)
		return []byte{0xc0}, nil // msgpack nil
	})
	srv.HandleStream("sum", func(_ context.Context, _ []byte, w io.Writer) error {
		p.ran.Add(1)
		_, err := w.Write([]byte("streamed"))
		return err
	})
	go srv.Serve(p.l)
	var d net.Dialer
	cl, err := wire.NewClient(wire.ClientConfig{Dialer: wire.DialerFunc(func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		fc := &failWriteConn{Conn: c}
		p.mu.Lock()
		p.conns = append(p.conns, fc)
		p.mu.Unlock()
		return fc, nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	p.cl = cl
	return p
}

// failWrites makes the next write on each client connection so far fail.
func (p *retryPair) failWrites() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.fail.Store(true)
	}
}

func (p *retryPair) call(ctx context.Context) error {
	return p.cl.Call(ctx, p.addr, "count", nil, nil)
}

func (p *retryPair) stream(ctx context.Context) (string, error) {
	rc, err := p.cl.CallStream(ctx, p.addr, "sum", nil)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// check compares the client's dials and retries and the handler's runs
// with what the test expects.
func (p *retryPair) check(t *testing.T, dials, retries uint64, ran int64) {
	t.Helper()
	st := p.cl.Stats()
	if st.Dials != dials || st.Retries != retries || p.ran.Load() != ran {
		t.Errorf("dials %d, retries %d, handler runs %d; want %d, %d, %d", st.Dials, st.Retries, p.ran.Load(), dials, retries, ran)
	}
}

// A reused connection that turns out dead when a call is written (the
// peer restarted; its kernel resets the connection) costs an idempotent
// call one retry on a new connection, not a failure.
func TestRetryOnDeadReusedConn(t *testing.T) {
	p := newRetryPair(t)
	ctx := wire.WithIdempotent(ctxT(t, 10*time.Second))
	if err := p.call(ctx); err != nil {
		t.Fatal(err)
	}
	p.l.kill(resetOnRequest)
	if err := p.call(ctx); err != nil {
		t.Fatalf("call on a dead reused connection: %v, want it retried on a new one", err)
	}
	p.check(t, 2, 1, 2) // the reset request never ran
	if err := p.call(ctx); err != nil {
		t.Fatal(err)
	}
	p.check(t, 2, 1, 3) // the new connection is kept
}

// Without WithIdempotent, a call written whole is not sent again: the peer
// may have run it.
func TestNoRetryWrittenNotIdempotent(t *testing.T) {
	p := newRetryPair(t)
	ctx := ctxT(t, 10*time.Second)
	if err := p.call(ctx); err != nil {
		t.Fatal(err)
	}
	p.l.kill(resetOnAnswer)
	if err := p.call(ctx); !errors.Is(err, wire.ErrPeerGone) {
		t.Fatalf("err = %v, want ErrPeerGone", err)
	}
	p.check(t, 1, 0, 2) // it ran, and was not sent again
	if err := p.call(ctx); err != nil {
		t.Fatalf("next call: %v", err)
	}
	p.check(t, 2, 0, 3)
}

// An idempotent call that the peer ran before its connection died is run
// again: the price WithIdempotent says it accepts.
func TestRetryIdempotentMayRunTwice(t *testing.T) {
	p := newRetryPair(t)
	ctx := wire.WithIdempotent(ctxT(t, 10*time.Second))
	if err := p.call(ctx); err != nil {
		t.Fatal(err)
	}
	p.l.kill(resetOnAnswer)
	if err := p.call(ctx); err != nil {
		t.Fatal(err)
	}
	p.check(t, 2, 1, 3)
}

// A write that fails on a reused connection never reached the peer whole,
// so any call is sent again.
func TestRetryAfterWriteError(t *testing.T) {
	p := newRetryPair(t)
	ctx := ctxT(t, 10*time.Second)
	if err := p.call(ctx); err != nil {
		t.Fatal(err)
	}
	p.failWrites()
	if err := p.call(ctx); err != nil {
		t.Fatalf("call whose write failed on a reused connection: %v, want it retried", err)
	}
	p.check(t, 2, 1, 2)
}

// A call on a connection dialled for it is never retried, idempotent or
// not: the peer is down or refusing.
func TestNoRetryOnFreshConn(t *testing.T) {
	p := newRetryPair(t)
	p.l.onNew.Store(resetOnRequest)
	ctx := wire.WithIdempotent(ctxT(t, 10*time.Second))
	if err := p.call(ctx); !errors.Is(err, wire.ErrPeerGone) {
		t.Fatalf("err = %v, want ErrPeerGone", err)
	}
	p.check(t, 1, 0, 0)
	if _, err := p.stream(ctx); !errors.Is(err, wire.ErrPeerGone) {
		t.Fatalf("stream err = %v, want ErrPeerGone", err)
	}
	p.check(t, 2, 0, 0)
	// The retry's own connection, though fresh, is not retried either.
	p.l.onNew.Store(alive)
	if err := p.call(ctx); err != nil {
		t.Fatal(err)
	}
	p.l.onNew.Store(resetOnRequest)
	p.l.kill(resetOnRequest)
	if err := p.call(ctx); !errors.Is(err, wire.ErrPeerGone) {
		t.Fatalf("err = %v, want ErrPeerGone after one retry", err)
	}
	p.check(t, 4, 1, 1)
}

// A stream connection kept idle that died meanwhile costs the next
// idempotent stream a retry on a new connection.
func TestRetryStreamOnDeadIdleConn(t *testing.T) {
	p := newRetryPair(t)
	ctx := wire.WithIdempotent(ctxT(t, 10*time.Second))
	if got, err := p.stream(ctx); err != nil || got != "streamed" {
		t.Fatalf("stream = %q, %v", got, err)
	}
	p.l.kill(resetOnRequest)
	if got, err := p.stream(ctx); err != nil || got != "streamed" {
		t.Fatalf("stream on a dead idle connection = %q, %v; want it retried", got, err)
	}
	p.check(t, 2, 1, 2)
	ms := method(p.cl.Stats().Methods, "sum")
	if ms.Calls != 2 || ms.Errors["peer_gone"] != 0 {
		t.Errorf("sum stats: %d calls, errors %v; want 2 calls, none failed (a retry is one call)", ms.Calls, ms.Errors)
	}
	// Not idempotent, the same stream fails.
	p.l.kill(resetOnAnswer)
	if _, err := p.stream(ctxT(t, 10*time.Second)); !errors.Is(err, wire.ErrPeerGone) {
		t.Fatalf("err = %v, want ErrPeerGone", err)
	}
	p.check(t, 2, 1, 3)
}

// ErrNotSent says a call never left the client, so a caller may send it
// again whatever it does: a refused dial is; a call written whole whose
// connection died (the peer may have run it) is not, nor a call the peer
// answered with an error.
func TestErrNotSent(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()
	cl, err := wire.NewClient(wire.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := ctxT(t, 10*time.Second)
	if err := cl.Call(ctx, refused, "count", nil, nil); !errors.Is(err, wire.ErrNotSent) || !errors.Is(err, wire.ErrPeerGone) {
		t.Fatalf("refused dial: %v, want ErrNotSent and ErrPeerGone", err)
	}

	p := newRetryPair(t)
	if err := p.call(ctx); err != nil {
		t.Fatal(err)
	}
	p.l.kill(resetOnAnswer)
	if err := p.call(ctx); !errors.Is(err, wire.ErrPeerGone) || errors.Is(err, wire.ErrNotSent) {
		t.Fatalf("connection dead after the request: %v, want ErrPeerGone without ErrNotSent", err)
	}
	if err := p.cl.Call(ctx, p.addr, "nosuch", nil, nil); !errors.Is(err, wire.ErrUnknownMethod) || errors.Is(err, wire.ErrNotSent) {
		t.Fatalf("unknown method: %v, want a remote error, not ErrNotSent", err)
	}
}
