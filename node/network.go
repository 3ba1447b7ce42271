package node

import (
	"context"
	"net"

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
