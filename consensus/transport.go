package consensus

import (
	"context"
	"fmt"
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
	s.layer = &streamLayer{Listener: ln, addr: adv, dial: dial}
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
type streamLayer struct {
	net.Listener
	addr tcpAddr
	dial func(ctx context.Context, addr string) (net.Conn, error)

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

// Dial opens a connection within timeout, or until abort.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
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
	c, err := l.dial(ctx, string(address))
	if err != nil {
		return nil, err
	}
	lc := &layerConn{Conn: c, l: l}
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
		c.Conn.Close()
	}
	clear(l.conns)
}

// layerConn is a dialled connection; it leaves the layer's set when closed.
type layerConn struct {
	net.Conn
	l *streamLayer
}

func (c *layerConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// FirstBytes returns the bytes a raft connection opens with when its
// dialer sends no protocol byte of its own: raft's network transport
// starts with a message type (hashicorp/raft's rpcAppendEntries to
// rpcRequestPreVote). A caller that shares raft's port by first byte
// routes these to raft too, so a peer that dials raft plainly (one with
// raft on a port of its own, or of a version before the port was shared)
// still reaches it.
func FirstBytes() []byte { return []byte{0, 1, 2, 3, 4} }
