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
