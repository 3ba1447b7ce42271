package consensus

import (
	"context"
	"fmt"
	"net"
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
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &streamLayer{Listener: ln, addr: adv, dial: dial}, MaxPool: 3, Timeout: transportTimeout, Logger: s.hlog,
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
type streamLayer struct {
	net.Listener
	addr tcpAddr
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (l *streamLayer) Addr() net.Addr { return l.addr }

// Dial opens a connection within timeout.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.dial(ctx, string(address))
}

// FirstBytes returns the bytes a raft connection opens with when its
// dialer sends no protocol byte of its own: raft's network transport
// starts with a message type (hashicorp/raft's rpcAppendEntries to
// rpcRequestPreVote). A caller that shares raft's port by first byte
// routes these to raft too, so a peer that dials raft plainly (one with
// raft on a port of its own, or of a version before the port was shared)
// still reaches it.
func FirstBytes() []byte { return []byte{0, 1, 2, 3, 4} }
