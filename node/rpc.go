package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/internal/remoteip"
	"github.com/pingora-go/pingora-go/wire"
)

// rpcStatusMethod answers a caller on the cluster port with this node's
// identity, config version and readiness: the cluster RPC's smoke test
// (TestNodesJoinAndAgreeOnRing).
const rpcStatusMethod = "node.status"

// rpcListenerName is the cluster port's listener name in a hand-off.
const rpcListenerName = "cluster"

// RPCStatus is the answer to node.status.
type RPCStatus struct {
	Name          string `msgpack:"n"`
	Version       string `msgpack:"v"`
	ConfigVersion int64  `msgpack:"c"`
	Ready         bool   `msgpack:"r"`
	// RaftLeader: this node leads raft, and CommitIndex is its commit
	// index (a node catching up after a restart asks; catchup.go).
	RaftLeader  bool   `msgpack:"l,omitempty"`
	CommitIndex uint64 `msgpack:"ci,omitempty"`
}

type rpcEmpty struct{}

// startRPC opens the cluster port on cluster_addr, when it is set: the
// listener (bound, or inherited in a hand-off), Options.Network's wrap,
// the cluster's mutual TLS, then a wire.Mux that hands connections opening
// with wire.ProtoRPC to the RPC server and those opening with
// wire.ProtoRaft to raft (startConsensus, through raftListen), as Consul's
// server port does (issue 13). The accept loops run in g.
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
		if rs := n.Store(); rs != nil && rs.IsLeader() {
			st.RaftLeader, st.CommitIndex = true, rs.Status().CommitIndex
		}
		return st, nil
	})
	n.registerLeaderRPC(srv)
	n.limits.l.Register(srv)
	n.cache.c.Serve(srv)
	ln, err := n.listen(rpcListenerName, n.cfg.ClusterAddr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("cluster_addr: %w", inUse(err, "cluster_addr", "--cluster-addr"))
	}
	mux, err := n.clusterMux(ln)
	if err != nil {
		ln.Close()
		srv.Close()
		return err
	}
	rpcLn, err := mux.ListenLimits(wire.DefaultMuxConnLimit, maxRPCConnsPerAddr, wire.ProtoRPC)
	if err != nil {
		mux.Close()
		srv.Close()
		return err
	}
	n.mu.Lock()
	n.rpc, n.rpcLn, n.mux = srv, ln, mux
	n.mu.Unlock()
	g.goFunc(func() { mux.Serve() })
	g.goFunc(func() { srv.Serve(rpcLn) })
	n.log.Info("cluster port listening", "addr", ln.Addr().String(), "raft", n.cfg.Replicated() && n.cfg.RaftShared(),
		"tls", n.cfg.ClusterTLS != nil)
	if n.cfg.ClusterTLS == nil {
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
			n.log.Warn("the cluster port has no cluster_tls: whoever reaches it can write raft entries and the cluster config; keep it on a private network or set cluster_tls",
				"addr", ln.Addr().String())
		}
	}
	return nil
}

// clusterMux puts Options.Network's wrap and the cluster's TLS over ln
// and returns the Mux that shares it.
func (n *Node) clusterMux(ln net.Listener) (*wire.Mux, error) {
	ct, err := n.loadClusterTLS()
	if err != nil {
		return nil, err
	}
	l := n.wrapClusterListener(ln, ct)
	return wire.NewMux(l, wire.MuxConfig{Logger: n.log.With("part", "cluster-port")})
}

// wrapClusterListener applies Options.Network (before TLS), then TLS.
func (n *Node) wrapClusterListener(ln net.Listener, ct *clusterTLS) net.Listener {
	ln = n.clusterListener(ln)
	if ct != nil {
		ln = tls.NewListener(ln, ct.server)
	}
	return ln
}

// stopRPC stops the RPC server and the cluster port (raft's side of it is
// closed by raft, which stops first).
func (n *Node) stopRPC() {
	n.mu.Lock()
	srv, mux := n.rpc, n.mux
	n.rpc, n.mux = nil, nil
	n.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	if mux != nil {
		mux.Close()
	}
	n.rpcClient.Close()
}

// RPCAddr returns the bound cluster port's address, or "".
func (n *Node) RPCAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rpcLn == nil {
		return ""
	}
	return n.rpcLn.Addr().String()
}

// newClusterDial returns the function every cluster connection this node
// opens goes through (RPC clients and raft): TCP, Options.Network's wrap
// (clusterDial), then the cluster's TLS when it has one (dialCluster).
func (n *Node) newClusterDial() (DialFunc, error) {
	ct, err := n.loadClusterTLS()
	if err != nil {
		return nil, err
	}
	dial := n.clusterDial()
	if ct == nil {
		return dial, nil
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		return dialCluster(ctx, dial, addr, ct.client)
	}, nil
}

// raftListen returns raft's listener: its side of the cluster port, or,
// with raft_addr, a port of its own behind the same wrap and TLS.
func (n *Node) raftListen() (net.Listener, error) {
	if !n.cfg.RaftShared() {
		ln, err := net.Listen("tcp", n.cfg.RaftAddr)
		if err != nil {
			return nil, fmt.Errorf("raft_addr: %w", inUse(err, "raft_addr", "--raft-addr"))
		}
		ct, err := n.loadClusterTLS()
		if err != nil {
			ln.Close()
			return nil, err
		}
		// Bounded as raft's side of the cluster port is: a stranger
		// may hold raft connections for up to the idle timeout.
		return n.wrapClusterListener(newConnLimitListener(ln, maxRaftConns, maxRaftConnsPerAddr), ct), nil
	}
	n.mu.Lock()
	mux := n.mux
	n.mu.Unlock()
	if mux == nil {
		return nil, errors.New("the cluster port is not open")
	}
	ln, err := mux.ListenLimits(maxRaftConns, maxRaftConnsPerAddr, wire.ProtoRaft, consensus.FirstBytes()...)
	if err != nil {
		return nil, err
	}
	return protoByteListener{ln}, nil
}

// maxRaftConns bounds the raft connections open on the cluster port at
// once. Raft kept an inbound connection for as long as the peer liked,
// idle or halfway through a message, with no deadline (now the consensus
// layer closes one idle for consensus.Config.IdleTimeout): 6,000 connections
// that sent only the raft byte stayed open on a real node, each holding a
// descriptor and up to 335 KB (a message declaring 2^31 entries). A node
// gets a handful from each peer (its connection pool, heartbeats, the
// pipeline, snapshots).
const maxRaftConns = 512

// maxRaftConnsPerAddr bounds those from one remote IP (loopback aside):
// one client that opened maxRaftConns idle connections (the raft byte and
// nothing more; no credential needed without cluster_tls) kept every
// peer's new raft connection out, so a leader elected elsewhere, or a
// restarted peer, could not reach this node. A peer opens a few (raft's
// pool of 3, the pipeline, a snapshot), twice while it is upgraded.
const maxRaftConnsPerAddr = 64

// maxRPCConnsPerAddr bounds the node-to-node RPC connections from one
// remote IP (loopback aside) among the wire.DefaultMuxConnLimit: one
// client that held them all, idle after the protocol byte, kept a peer
// that restarted out of this node's RPC (its forwarded config writes got
// 503, its cache and rate-limit calls fell back; seen on 3 hosts). A peer
// holds one connection for its calls and one per body it is streaming.
const maxRPCConnsPerAddr = 1024

// protoByteListener takes wire.ProtoRaft off the connections the Mux
// hands to raft, which reads its own message type from the next byte; a
// connection from a peer that sent no protocol byte (raft alone on its
// port, or an older version) starts with the message type, which is kept.
// The byte is the one the Mux read already, so Accept does not wait on
// the peer.
type protoByteListener struct{ net.Listener }

func (l protoByteListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var b [1]byte
		switch _, err := io.ReadFull(c, b[:]); {
		case err != nil:
			c.Close()
		case b[0] == wire.ProtoRaft:
			return c, nil
		default:
			return &replayConn{Conn: c, first: b[0]}, nil
		}
	}
}

// replayConn returns first, then reads the connection.
type replayConn struct {
	net.Conn
	first  byte
	played bool // first was returned; only raft's one reader reads
}

func (c *replayConn) Read(p []byte) (int, error) {
	if !c.played && len(p) > 0 {
		c.played = true
		p[0] = c.first
		return 1, nil
	}
	return c.Conn.Read(p)
}

// raftDial opens a raft connection: to a peer whose raft shares its
// cluster port it sends wire.ProtoRaft first, so the peer's Mux hands it
// to raft.
func (n *Node) raftDial(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := n.dial(ctx, addr)
	if err != nil || !n.raftSharesPort(addr) {
		return conn, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(dl)
	}
	_, err = conn.Write([]byte{wire.ProtoRaft})
	conn.SetWriteDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// raftSharesPort reports whether the raft address addr is a cluster port
// (shared with RPC), from the member that gossips it: a peer with
// raft_addr, or of a version before issue 13, has raft alone on its port
// and must not get the protocol byte. A peer not known (yet) is taken to
// be configured as this node is.
func (n *Node) raftSharesPort(addr string) bool {
	if mc := n.Members(); mc != nil {
		for _, m := range mc.Members() {
			if m.Meta.Addrs.Raft == addr {
				return m.Meta.Addrs.Raft == m.Meta.Addrs.Cluster
			}
		}
	}
	return n.cfg.RaftShared()
}

// connLimitListener closes, as soon as they are accepted, connections
// beyond total open at once or beyond perAddr from one remote IP
// (loopback aside), as wire.Mux.ListenLimits does on the cluster port. It
// bounds raft's own port (raft_addr), which took any number of idle
// connections: 3,000 from one client stayed open on a real node.
type connLimitListener struct {
	net.Listener
	total, perAddr int
	mu             sync.Mutex
	open           int
	addrs          map[string]int
}

func newConnLimitListener(ln net.Listener, total, perAddr int) *connLimitListener {
	return &connLimitListener{Listener: ln, total: total, perAddr: perAddr, addrs: map[string]int{}}
}

// Accept returns the next connection within the bounds.
func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteip.Bounded(c)
		l.mu.Lock()
		ok := l.open < l.total && (ip == "" || l.addrs[ip] < l.perAddr)
		if ok {
			l.open++
			if ip != "" {
				l.addrs[ip]++
			}
		}
		l.mu.Unlock()
		if !ok {
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *connLimitListener) release(ip string) {
	l.mu.Lock()
	l.open--
	if ip != "" {
		if l.addrs[ip]--; l.addrs[ip] <= 0 {
			delete(l.addrs, ip)
		}
	}
	l.mu.Unlock()
}

// limitedConn frees its place under a connLimitListener when closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
