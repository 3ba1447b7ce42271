package node

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// DialFunc opens a connection to a peer's cluster port.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// Network lets a test put faults between in-process nodes (node/nodetest):
// it wraps every socket a node opens for cluster traffic. A nil method
// result is not allowed; return the argument to leave it as it is.
type Network interface {
	// ClusterListener wraps the cluster port's listener (raft and RPC
	// share it), before TLS.
	ClusterListener(l net.Listener) net.Listener
	// ClusterDial wraps the dial function raft and RPC use to reach a
	// peer's cluster port, before TLS.
	ClusterDial(d DialFunc) DialFunc
	// Gossip wraps memberlist's transport.
	Gossip(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// clusterListener applies Options.Network to a listener of the cluster
// port (raft's or RPC's), before TLS.
func (n *Node) clusterListener(l net.Listener) net.Listener {
	if n.opts.Network == nil {
		return l
	}
	return n.opts.Network.ClusterListener(l)
}

// clusterDial returns the function that opens a TCP connection to a
// peer's cluster port, with Options.Network applied; TLS goes on top
// (dialCluster).
func (n *Node) clusterDial() DialFunc {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	dial := DialFunc(func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	})
	if n.opts.Network != nil {
		dial = n.opts.Network.ClusterDial(dial)
	}
	return dial
}

// dialCluster connects to addr with dial, then with the cluster's TLS
// when tc is not nil.
func dialCluster(ctx context.Context, dial DialFunc, addr string, tc *tls.Config) (net.Conn, error) {
	conn, err := dial(ctx, addr)
	if err != nil || tc == nil {
		return conn, err
	}
	c := tls.Client(conn, tc)
	if err := c.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// gossipTransport is membership's WrapTransport: Options.Network's Gossip,
// or nil (the real network).
func (n *Node) gossipTransport() func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	if n.opts.Network == nil {
		return nil
	}
	return n.opts.Network.Gossip
}
