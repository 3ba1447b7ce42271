package consensus

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// transport builds the raft transport: Config.Transport as given, else a
// network transport over Config.StreamLayer (or plain TCP) bound to
// BindAddr and advertised at Advertise.
func (s *Store) transport() (raft.Transport, error) {
	if s.cfg.Transport != nil {
		return s.cfg.Transport, nil
	}
	var sl raft.StreamLayer
	var err error
	if s.cfg.StreamLayer != nil {
		sl, err = s.cfg.StreamLayer(s.cfg.BindAddr)
	} else {
		sl, err = listenTCP(s.cfg.BindAddr)
	}
	if err != nil {
		return nil, fmt.Errorf("consensus: raft listen %s: %w", s.cfg.BindAddr, err)
	}
	adv, err := advertiseAddr(s.cfg.Advertise, sl.Addr().String())
	if err != nil {
		sl.Close()
		return nil, err
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &advertisedLayer{StreamLayer: sl, addr: adv}, MaxPool: 3, Timeout: transportTimeout, Logger: s.hlog,
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

// advertisedLayer is a stream layer that reports its advertised address,
// which raft records as this server's address.
type advertisedLayer struct {
	raft.StreamLayer
	addr tcpAddr
}

func (l *advertisedLayer) Addr() net.Addr { return l.addr }

// tcpLayer is raft's plain TCP stream layer.
type tcpLayer struct{ net.Listener }

func listenTCP(bind string) (raft.StreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	return tcpLayer{ln}, nil
}

func (l tcpLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}
