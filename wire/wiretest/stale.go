package wiretest

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"github.com/pingora-go/pingora-go/wire"
)

// StaleConns wraps dialers; Kill makes every connection they made so far
// dead in a way its client sees only when it next writes: the write is
// swallowed and the connection closed, as a restarted peer's kernel
// resets a connection it no longer knows. The zero value is ready.
type StaleConns struct {
	mu    sync.Mutex
	conns []*staleConn
}

type staleConn struct {
	net.Conn
	dead atomic.Bool
}

func (c *staleConn) Write(p []byte) (int, error) {
	if c.dead.Load() {
		c.Conn.Close()
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Wrap returns d with its connections tracked for Kill.
func (s *StaleConns) Wrap(d wire.Dialer) wire.Dialer {
	return wire.DialerFunc(func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, addr)
		if err != nil {
			return nil, err
		}
		sc := &staleConn{Conn: c}
		s.mu.Lock()
		s.conns = append(s.conns, sc)
		s.mu.Unlock()
		return sc, nil
	})
}

// Kill makes every connection made so far dead at its next write.
func (s *StaleConns) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.dead.Store(true)
	}
}
