package consensus

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// transport builds the raft transport: Config.Transport as given, else
// raft's network transport over Config.Listen (or TCP on BindAddr) and
// Config.Dial (or TCP), advertised at Advertise.
func (s *Store) transport() (raft.Transport, error) {
	if s.cfg.Transport != nil {
		return s.cfg.Transport, nil
	}
	var ln net.Listener
	var err error
	if s.cfg.Listen != nil {
		ln, err = s.cfg.Listen()
	} else {
		ln, err = net.Listen("tcp", s.cfg.BindAddr)
	}
	if err != nil {
		return nil, fmt.Errorf("consensus: raft listen %s: %w", s.cfg.BindAddr, err)
	}
	adv, err := advertiseAddr(s.cfg.Advertise, ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, err
	}
	dial := s.cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	s.layer = &streamLayer{Listener: ln, addr: adv, dial: dial, idle: s.cfg.IdleTimeout}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: s.layer, MaxPool: 3, Timeout: transportTimeout, Logger: s.hlog,
		MaxRPCsInFlight: noPipelining,
	}), nil
}

// noPipelining turns raft's pipelined replication off. Its pipeline can
// deadlock (hashicorp/raft v1.8.0): when a follower's answer ends the
// decoder (a newer term, a refused entry), the next send parks on the
// in-flight channel while the response reader parks on the done
// channel nobody reads, and the replication goroutine never returns, so
// Raft.Shutdown waits for ever (seen in node/nodetest's
// TestKillAndRestart after a restarted node campaigned; the same bug as
// hashicorp/raft#612, worked around the same way by grafana/pyroscope).
// A config write is rare and small, so one AppendEntries at a time costs
// nothing that matters.
const noPipelining = 1

// advertiseAddr returns what other servers dial: advertise, with port 0
// meaning the bound port, or the bound address itself, which then must
// not be a wildcard.
func advertiseAddr(advertise, bound string) (tcpAddr, error) {
	bhost, bport, err := net.SplitHostPort(bound)
	if err != nil {
		return "", fmt.Errorf("consensus: bound address %q: %w", bound, err)
	}
	if advertise == "" {
		if ip := net.ParseIP(bhost); ip == nil || ip.IsUnspecified() {
			return "", fmt.Errorf("consensus: raft is bound to %s, which other servers cannot dial: set Advertise", bound)
		}
		return tcpAddr(bound), nil
	}
	host, port, err := net.SplitHostPort(advertise)
	if err != nil || host == "" {
		return "", fmt.Errorf("consensus: Advertise %q is not host:port", advertise)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "", fmt.Errorf("consensus: Advertise %q is a wildcard address", advertise)
	}
	if port == "0" {
		port = bport
	}
	return tcpAddr(net.JoinHostPort(host, port)), nil
}

// tcpAddr is an advertised "host:port"; the host may be a name.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }

// streamLayer is raft's stream layer over a listener and a dial function
// (the seam that keeps raft's types out of consensus's callers); it
// reports the advertised address, which raft records as this server's.
// abort ends its dials and closes its connections: raft's Shutdown waits
// for every RPC goroutine, and one dialling a peer whose packets vanish
// (a host that is down, a partition) or waiting on its answer would hold
// it for the transport's whole timeout (10 s), so a node that stopped or
// handed over to its successor while another server was unreachable kept
// raft, and the successor waited, that long.
//
// Connections idle out (Config.IdleTimeout): raft's network transport
// reads an inbound connection with no deadline, so Accept's connections
// carry one per read and write, and a dialled connection that idled for
// half of it in raft's pool is dialled afresh before its next RPC.
type streamLayer struct {
	net.Listener
	addr tcpAddr
	dial func(ctx context.Context, addr string) (net.Conn, error)
	idle time.Duration // 0: no idle bound (tests of the layer alone)

	mu      sync.Mutex
	stop    chan struct{} // closed by abort; made on first use
	aborted bool
	conns   map[*layerConn]struct{} // dialled and not closed
}

// stopped is closed by abort.
func (l *streamLayer) stopped() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stop == nil {
		l.stop = make(chan struct{})
	}
	return l.stop
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (l *streamLayer) Addr() net.Addr { return l.addr }

// Accept returns the next inbound connection, bounded by the idle timeout.
func (l *streamLayer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || l.idle <= 0 {
		return c, err
	}
	return &idleConn{Conn: c, idle: l.idle}, nil
}

// idleConn is an inbound raft connection: each read must bring a byte,
// and each write go out, within idle. Deadlines are wall-clock time,
// which is what net.Conn takes. A read that idles out reads as the end of
// the connection: raft then closes it as one the peer closed, without a
// warning "failed to decode incoming command: i/o timeout" for every
// connection a peer let idle (one a message had begun on still fails to
// decode, and is logged).
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Read(p)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		err = io.EOF
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(p)
}

// Dial opens a connection within timeout, or until abort.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := l.dialConn(string(address), timeout)
	if err != nil {
		return nil, err
	}
	lc := &layerConn{conn: c, l: l, addr: string(address), used: time.Now()}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.aborted {
		c.Close()
		return nil, fmt.Errorf("consensus: raft transport stopping")
	}
	if l.conns == nil {
		l.conns = map[*layerConn]struct{}{}
	}
	l.conns[lc] = struct{}{}
	return lc, nil
}

// dialConn dials address within timeout, or until abort.
func (l *streamLayer) dialConn(address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stop := l.stopped()
	go func() { // ends with the dial: cancel runs on return
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return l.dial(ctx, address)
}

// abort ends the dials in progress and closes every connection dialled.
func (l *streamLayer) abort() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.aborted {
		return
	}
	l.aborted = true
	if l.stop == nil {
		l.stop = make(chan struct{})
	}
	close(l.stop)
	for c := range l.conns {
		c.current().Close()
	}
	clear(l.conns)
}

// layerConn is a dialled connection; it leaves the layer's set when
// closed. Raft sets a deadline on a pooled connection before each RPC
// (SetDeadline): when the connection has idled for half the layer's idle
// timeout, the other side may have closed it (idleConn), so it is
// replaced by a fresh one first. Between RPCs nothing is left to read on
// a raft connection (answers come only to requests), so the swap loses
// nothing.
type layerConn struct {
	l    *streamLayer
	addr string

	mu   sync.Mutex
	conn net.Conn
	used time.Time // the last read, write or dial
	err  error     // a failed redial: every later read and write
}

func (c *layerConn) current() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

func (c *layerConn) touch(conn net.Conn) {
	c.mu.Lock()
	if c.conn == conn {
		c.used = time.Now()
	}
	c.mu.Unlock()
}

func (c *layerConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	conn, err := c.conn, c.err
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := conn.Read(p)
	c.touch(conn)
	return n, err
}

func (c *layerConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	conn, err := c.conn, c.err
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := conn.Write(p)
	c.touch(conn)
	return n, err
}

// SetDeadline starts an RPC: a connection that idled too long is dialled
// afresh first.
func (c *layerConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	stale := c.l.idle > 0 && c.err == nil && time.Since(c.used) >= c.l.idle/2
	old := c.conn
	c.mu.Unlock()
	if stale {
		old.Close()
		conn, err := c.l.dialConn(c.addr, transportTimeout)
		c.mu.Lock()
		if err != nil {
			c.err = fmt.Errorf("consensus: raft connection to %s idled out, dialling it again: %w", c.addr, err)
		} else {
			c.conn, c.used = conn, time.Now()
		}
		c.mu.Unlock()
		if err != nil {
			return c.err
		}
		c.l.mu.Lock()
		aborted := c.l.aborted
		c.l.mu.Unlock()
		if aborted { // abort closed the old one only
			conn.Close()
		}
	}
	return c.current().SetDeadline(t)
}

func (c *layerConn) SetReadDeadline(t time.Time) error  { return c.current().SetReadDeadline(t) }
func (c *layerConn) SetWriteDeadline(t time.Time) error { return c.current().SetWriteDeadline(t) }
func (c *layerConn) LocalAddr() net.Addr                { return c.current().LocalAddr() }
func (c *layerConn) RemoteAddr() net.Addr               { return c.current().RemoteAddr() }

func (c *layerConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.current().Close()
}

// FirstBytes returns the bytes a raft connection opens with when its
// dialer sends no protocol byte of its own: raft's network transport
// starts with a message type (hashicorp/raft's rpcAppendEntries to
// rpcRequestPreVote). A caller that shares raft's port by first byte
// routes these to raft too, so a peer that dials raft plainly (one with
// raft on a port of its own, or of a version before the port was shared)
// still reaches it.
func FirstBytes() []byte { return []byte{0, 1, 2, 3, 4} }
