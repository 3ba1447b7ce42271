package node

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/pingora-go/pingora-go/wire"
)

// rpcStatusMethod answers a caller on the cluster port with this node's
// identity, config version and readiness. No node calls it yet: it is the
// cluster RPC's smoke test (TestNodesJoinAndAgreeOnRing), and further
// calls will register beside it.
const rpcStatusMethod = "node.status"

// rpcListenerName is the RPC listener's name in a hand-off.
const rpcListenerName = "cluster"

// RPCStatus is the answer to node.status.
type RPCStatus struct {
	Name          string `msgpack:"n"`
	Version       string `msgpack:"v"`
	ConfigVersion int64  `msgpack:"c"`
	Ready         bool   `msgpack:"r"`
}

type rpcEmpty struct{}

// startRPC serves node-to-node calls on cluster_addr when it is set; the
// accept loop runs in g.
func (n *Node) startRPC(g *group) error {
	if n.cfg.ClusterAddr == "" {
		return nil
	}
	srv, err := wire.NewServer(wire.ServerConfig{Logger: n.log.With("part", "rpc"), Tracer: n.tracing.wireTracer()})
	if err != nil {
		return err
	}
	wire.HandleFunc(srv, rpcStatusMethod, func(ctx context.Context, _ *rpcEmpty) (*RPCStatus, error) {
		st := &RPCStatus{Name: n.cfg.Name, Version: n.opts.Version, Ready: n.ready.Load()}
		if a := n.applied.Load(); a != nil {
			st.ConfigVersion = a.Version
		}
		return st, nil
	})
	n.limits.l.Register(srv)
	n.cache.c.Serve(srv)
	ln, err := n.listen(rpcListenerName, n.cfg.ClusterAddr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("cluster_addr: %w", err)
	}
	ct, err := n.loadClusterTLS()
	if err != nil {
		ln.Close()
		srv.Close()
		return err
	}
	serveLn := n.clusterListener(ln)
	if ct != nil {
		serveLn = tls.NewListener(serveLn, ct.server)
	}
	n.mu.Lock()
	n.rpc, n.rpcLn = srv, ln
	n.mu.Unlock()
	g.goFunc(func() { srv.Serve(serveLn) })
	n.log.Info("cluster RPC listening", "addr", ln.Addr().String())
	return nil
}

func (n *Node) stopRPC() {
	n.mu.Lock()
	srv := n.rpc
	n.rpc = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// RPCAddr returns the bound cluster RPC address, or "".
func (n *Node) RPCAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rpcLn == nil {
		return ""
	}
	return n.rpcLn.Addr().String()
}
