package node

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
)

// maxAdminConns bounds the admin API's connections open at once. Nothing
// bounded them: the head had 10 s and an idle connection a minute (now 5 s
// each, see adminTimeouts), but a client may open as many as it likes, and every one holds a descriptor
// of the process the proxy listeners, upstream connections and raft share
// (15,000 connections that each sent half a head held 14,000 descriptors
// and 145 MB of a real node, whose limit was 20,000). Its clients are
// operators, the CLI, probes, Prometheus and the other nodes' cluster
// pages, a handful at a time; the cluster port caps its connections alike.
const maxAdminConns = 512

// maxAdminConnsPerClient bounds one remote address's share of them, so
// that one client alone cannot take every connection and lock out the
// probes, Prometheus and the operators. Loopback clients are not held to
// it: the CLI, a tunnel (ssh -L, kubectl port-forward) or a reverse proxy
// on the same host bring every user from 127.0.0.1.
const maxAdminConnsPerClient = 64

// capListener closes, at once, the connections accepted while max are
// open, or perClient from the same remote address, so a flood of them
// costs the admin API its clients rather than the process its
// descriptors. Waiting to accept them instead would leave them in the
// kernel's queue and the clients waiting in vain.
type capListener struct {
	net.Listener
	max, perClient int
	log            *slog.Logger
	noise          *logthrottle.Throttle

	mu     sync.Mutex
	open   int
	byAddr map[netip.Addr]int // open connections of remote non-loopback clients
}

var _ net.Listener = (*capListener)(nil)

func newCapListener(ln net.Listener, max, perClient int, log *slog.Logger) *capListener {
	return &capListener{Listener: ln, max: max, perClient: perClient, log: log,
		noise: logthrottle.New(clock.Real{}, 0, 0), byAddr: map[netip.Addr]int{}}
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var client netip.Addr
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil && !ap.Addr().IsLoopback() {
			client = ap.Addr().Unmap()
		}
		l.mu.Lock()
		switch {
		case l.open >= l.max:
			l.mu.Unlock()
			l.refuse(c, "the admin API has its limit of connections open", l.max)
			continue
		case client.IsValid() && l.byAddr[client] >= l.perClient:
			l.mu.Unlock()
			l.refuse(c, "the client has its limit of admin connections open", l.perClient)
			continue
		}
		l.open++
		if client.IsValid() {
			l.byAddr[client]++
		}
		l.mu.Unlock()
		return &cappedConn{Conn: c, l: l, client: client}, nil
	}
}

func (l *capListener) refuse(c net.Conn, why string, limit int) {
	c.Close()
	l.noise.Log(l.log, slog.LevelWarn, "admin-over-limit:"+why, "admin connection closed: "+why, "limit", limit, "client", c.RemoteAddr().String())
}

// release gives a closed connection's place back.
func (l *capListener) release(client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if client.IsValid() {
		if l.byAddr[client]--; l.byAddr[client] <= 0 {
			delete(l.byAddr, client)
		}
	}
}

// cappedConn gives its place back when it is closed (once, however often).
type cappedConn struct {
	net.Conn
	l      *capListener
	client netip.Addr // the invalid Addr for a loopback client
	once   sync.Once
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.client) })
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
