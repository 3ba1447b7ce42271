package node

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
	"github.com/pingora-go/pingora-go/internal/remoteip"
	"github.com/pingora-go/pingora-go/wire"
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

// maxAdminConnsLocalReserve of them are kept for loopback clients: remote
// clients together hold at most maxAdminConns less these, so a flood from
// many addresses (8 at their 64 each held all 512, renewed every 5 s)
// cannot lock out the operator on the host, whose CLI and ssh -L tunnel
// come from loopback. Loopback clients may still take any free slot of
// the total. 64, as one remote address may hold: the CLI takes one
// connection per command and a tunnelled browser a few, so 64 leaves room
// for a local reverse proxy's or a tunnel's several users besides, and the
// 448 left to remote clients are still 7 addresses at their full share,
// far more than the probes, Prometheus and the cluster pages of the other
// nodes need.
const maxAdminConnsLocalReserve = 64

// capListener closes, at once, the connections accepted while max are
// open, or perClient from the same remote address, or, from a client not
// on loopback, max-localReserve from all such clients, so a flood of them
// costs the admin API its clients rather than the process its
// descriptors, and the host's own operator keeps a way in. Waiting to
// accept them instead would leave them in the kernel's queue and the
// clients waiting in vain.
type capListener struct {
	net.Listener
	max, perClient, localReserve int
	log                          *slog.Logger
	noise                        *logthrottle.Throttle

	mu     sync.Mutex
	open   int
	remote int                // open connections of clients not on loopback
	byAddr map[netip.Addr]int // open connections of remote non-loopback clients

	// An accept that fails for want of descriptors is retried here, after
	// a back-off (wire.AcceptBackoff), not handed to net/http, which would log
	// a plain-text line a second on stderr; acceptFails counts them
	// (pingora_admin_accept_failures_total).
	clk         clock.Clock
	acceptFails atomic.Uint64
	closeOnce   sync.Once
	closed      chan struct{}
}

var _ net.Listener = (*capListener)(nil)

func newCapListener(ln net.Listener, max, perClient, localReserve int, log *slog.Logger) *capListener {
	return &capListener{Listener: ln, max: max, perClient: perClient, localReserve: localReserve, log: log,
		noise: logthrottle.New(clock.Real{}, 0, 0), byAddr: map[netip.Addr]int{}, clk: clock.Real{}, closed: make(chan struct{})}
}

// Close closes the listener and ends an accept back-off at once.
func (l *capListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *capListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !wire.AcceptRetryable(err) {
				return nil, err
			}
			l.acceptFails.Add(1)
			backoff = wire.AcceptBackoff(backoff)
			l.noise.Log(l.log, slog.LevelWarn, "admin accept", "admin API: accept failed, retrying", "err", err, "retry_in", backoff)
			t := l.clk.NewTimer(backoff)
			select {
			case <-t.C():
				continue
			case <-l.closed:
				t.Stop()
				return nil, net.ErrClosed
			}
		}
		backoff = 0
		// Only an address that parses as loopback gets the reserve; one
		// that does not parse (no TCP client) is held to the remote share,
		// as no address's own cap can hold it.
		var client netip.Addr
		local := false
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			if local = ap.Addr().IsLoopback(); !local {
				client = remoteip.Of(ap.Addr()) // an IPv6 client by its /64
			}
		}
		l.mu.Lock()
		switch {
		case l.open >= l.max:
			l.mu.Unlock()
			l.refuse(c, "the admin API has its limit of connections open", l.max)
			continue
		case !local && l.remote >= l.max-l.localReserve:
			l.mu.Unlock()
			l.refuse(c, "remote clients have their share of admin connections open (the rest is kept for loopback clients)", l.max-l.localReserve)
			continue
		case client.IsValid() && l.byAddr[client] >= l.perClient:
			l.mu.Unlock()
			l.refuse(c, "the client has its limit of admin connections open", l.perClient)
			continue
		}
		l.open++
		if !local {
			l.remote++
		}
		if client.IsValid() {
			l.byAddr[client]++
		}
		l.mu.Unlock()
		return &cappedConn{Conn: c, l: l, client: client, local: local}, nil
	}
}

func (l *capListener) refuse(c net.Conn, why string, limit int) {
	c.Close()
	l.noise.Log(l.log, slog.LevelWarn, "admin-over-limit:"+why, "admin connection closed: "+why, "limit", limit, "client", c.RemoteAddr().String())
}

// release gives a closed connection's place back.
func (l *capListener) release(client netip.Addr, local bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if !local {
		l.remote--
	}
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
	local  bool       // a loopback client's: not counted in the remote share
	once   sync.Once
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.client, c.local) })
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
