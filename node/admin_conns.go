package node

import (
	"log/slog"
	"net"
	"sync"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
)

// maxAdminConns bounds the admin API's connections open at once. Nothing
// bounded them: the head has 10 s and an idle connection a minute, but a
// client may open as many as it likes, and every one holds a descriptor
// of the process the proxy listeners, upstream connections and raft share
// (15,000 connections that each sent half a head held 14,000 descriptors
// and 145 MB of a real node, whose limit was 20,000). Its clients are
// operators, the CLI, probes, Prometheus and the other nodes' cluster
// pages, a handful at a time; the cluster port caps its connections alike.
const maxAdminConns = 512

// capListener closes, at once, the connections accepted while max are
// open, so a flood of them costs the admin API its clients rather than
// the process its descriptors. Waiting to accept them instead would leave
// them in the kernel's queue and the clients waiting in vain.
type capListener struct {
	net.Listener
	slots chan struct{}
	log   *slog.Logger
	noise *logthrottle.Throttle
}

var _ net.Listener = (*capListener)(nil)

func newCapListener(ln net.Listener, max int, log *slog.Logger) *capListener {
	return &capListener{Listener: ln, slots: make(chan struct{}, max), log: log, noise: logthrottle.New(clock.Real{}, 0, 0)}
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &cappedConn{Conn: c, slots: l.slots}, nil
		default:
			c.Close()
			l.noise.Log(l.log, slog.LevelWarn, "admin-over-limit", "admin connection closed: the admin API has its limit of connections open",
				"limit", cap(l.slots), "client", c.RemoteAddr().String())
		}
	}
}

// cappedConn gives its slot back when it is closed (once, however often).
type cappedConn struct {
	net.Conn
	slots chan struct{}
	once  sync.Once
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.slots })
	return err
}

// CloseWrite lets the HTTP server half-close the connection before it
// closes it after an error, as it does a bare TCP connection.
func (c *cappedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
