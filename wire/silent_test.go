package wire_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/wire"
)

// holeConn is a connection whose writes vanish once hole is set, as on a
// path that drops packets: TCP then keeps the connection open and backs
// off its retransmissions, so a connection that saw a partition may stay
// silent for many seconds after the path heals (25 s measured after a
// 30 s one), while a new connection works at once.
type holeConn struct {
	net.Conn
	hole *atomic.Bool
}

func (c holeConn) Write(p []byte) (int, error) {
	if c.hole.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestSilentConnectionDropped: a unary call that times out with nothing
// read from its connection since it was sent leaves that connection
// behind: the next call dials a new one and is answered, instead of
// queueing behind a connection that has gone silent (a node whose peer's
// cluster port was cut for 30 s kept timing out its rate-limit reports,
// on its local share, for 25 s after the cut healed).
func TestSilentConnectionDropped(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, wire.ServerConfig{})
	srv.Handle("ping", func(context.Context, []byte) ([]byte, error) { return []byte("pong"), nil })
	go srv.Serve(l)
	var mu sync.Mutex
	var holes []*atomic.Bool // one per connection dialled
	d := wire.DialerFunc(func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		h := new(atomic.Bool)
		mu.Lock()
		holes = append(holes, h)
		mu.Unlock()
		return holeConn{Conn: c, hole: h}, nil
	})
	cl, err := wire.NewClient(wire.ClientConfig{Dialer: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	addr := l.Addr().String()
	if _, err := cl.CallRaw(ctxT(t, 5*time.Second), addr, "ping", nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	holes[0].Store(true) // the first connection goes silent for good
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := cl.CallRaw(ctx, addr, "ping", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call on the silent connection: %v, want a deadline", err)
	}
	if out, err := cl.CallRaw(ctxT(t, 2*time.Second), addr, "ping", nil); err != nil || string(out) != "pong" {
		t.Fatalf("the call after a silent timeout: %q, %v; want an answer on a new connection", out, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(holes) != 2 {
		t.Fatalf("%d connections dialled, want 2", len(holes))
	}
}

// closeSignal is a connection that reports its Close.
type closeSignal struct {
	net.Conn
	once   *sync.Once
	closed chan struct{}
}

func (c closeSignal) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// stalledPeer serves "hold" (answers "late" once released, or fails at
// its deadline), "stall" (answers "late" once released, whatever its
// deadline) and "ping"; its client
// counts dials and reports each connection's close.
type stalled struct {
	cl      *wire.Client
	srv     *wire.Server
	addr    string
	entered chan struct{}          // a "hold" call reached its handler
	release func()                 // "hold" and "stall" answer from now on
	conns   func() []chan struct{} // per connection dialled, closed at its Close
	// redirect, once set, is where the client's dials go instead of addr
	// (a successor that took the port over)
	redirect *atomic.Pointer[string]
}

func stalledPeer(t *testing.T) stalled {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{}, 8)
	released := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(released) }) }
	srv := newServer(t, wire.ServerConfig{})
	t.Cleanup(release) // before the server's cleanup (LIFO), which waits for its handlers
	srv.Handle("ping", func(context.Context, []byte) ([]byte, error) { return []byte("pong"), nil })
	srv.Handle("hold", func(ctx context.Context, _ []byte) ([]byte, error) {
		entered <- struct{}{}
		select {
		case <-released:
			return []byte("late"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	srv.Handle("stall", func(context.Context, []byte) ([]byte, error) {
		<-released // past its deadline too: the peer sends nothing meanwhile
		return []byte("late"), nil
	})
	go srv.Serve(l)
	var mu sync.Mutex
	var closed []chan struct{}
	redirect := new(atomic.Pointer[string])
	d := wire.DialerFunc(func(ctx context.Context, addr string) (net.Conn, error) {
		if to := redirect.Load(); to != nil {
			addr = *to
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		ch := make(chan struct{})
		mu.Lock()
		closed = append(closed, ch)
		mu.Unlock()
		return closeSignal{Conn: c, once: new(sync.Once), closed: ch}, nil
	})
	cl, err := wire.NewClient(wire.ClientConfig{Dialer: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	conns := func() []chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		return append([]chan struct{}(nil), closed...)
	}
	return stalled{cl, srv, l.Addr().String(), entered, release, conns, redirect}
}

// TestSilentConnectionKeepsItsCalls: a call timing out on a silent
// connection sends new calls to a new one, but the calls already waiting
// on the old connection keep it until they end: a peer stalled for a
// moment (a pause, a starved CPU) answers them late, and they get those
// answers instead of all failing at once. The old connection then closes.
func TestSilentConnectionKeepsItsCalls(t *testing.T) {
	p := stalledPeer(t)
	cl, addr, entered, release, conns := p.cl, p.addr, p.entered, p.release, p.conns
	if _, err := cl.CallRaw(ctxT(t, 5*time.Second), addr, "ping", nil); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		out []byte
		err error
	}
	held := make(chan answer, 1)
	go func() {
		out, err := cl.CallRaw(ctxT(t, 10*time.Second), addr, "hold", nil)
		held <- answer{out, err}
	}()
	<-entered // the held call waits in its handler: nothing comes back meanwhile
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := cl.CallRaw(ctx, addr, "stall", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled call: %v, want a deadline", err)
	}
	if out, err := cl.CallRaw(ctxT(t, 5*time.Second), addr, "ping", nil); err != nil || string(out) != "pong" {
		t.Fatalf("the call after a silent timeout: %q, %v; want an answer on a new connection", out, err)
	}
	if n := len(conns()); n != 2 {
		t.Fatalf("%d connections dialled, want 2", n)
	}
	select {
	case <-conns()[0]:
		t.Fatal("the silent connection closed with a call still waiting on it")
	default:
	}
	release()
	if a := <-held; a.err != nil || string(a.out) != "late" {
		t.Fatalf("the call waiting on the silent connection: %q, %v; want its late answer", a.out, a.err)
	}
	select {
	case <-conns()[0]:
	case <-time.After(5 * time.Second):
		t.Fatal("the silent connection stayed open after its last call ended")
	}
}

// TestSilentConnectionLingerBound: a call without a deadline does not
// keep a silent connection open for good: it fails with the connection
// after retireLinger.
func TestSilentConnectionLingerBound(t *testing.T) {
	defer wire.SetRetireLinger(100 * time.Millisecond)()
	p := stalledPeer(t)
	cl, addr, entered, release, conns := p.cl, p.addr, p.entered, p.release, p.conns
	defer release()
	if _, err := cl.CallRaw(ctxT(t, 5*time.Second), addr, "ping", nil); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() {
		_, err := cl.CallRaw(context.Background(), addr, "hold", nil)
		held <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := cl.CallRaw(ctx, addr, "stall", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled call: %v, want a deadline", err)
	}
	select {
	case err := <-held:
		if !errors.Is(err, wire.ErrPeerGone) {
			t.Fatalf("the call without a deadline: %v, want ErrPeerGone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call without a deadline still waits on the silent connection")
	}
	select {
	case <-conns()[0]:
	case <-time.After(5 * time.Second):
		t.Fatal("the silent connection is still open")
	}
}
