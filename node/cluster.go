package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/membership"
)

// clusterPart is the node's membership, when it gossips.
type clusterPart struct {
	mu      sync.Mutex
	members *membership.Cluster
	stop    chan struct{}
	done    chan struct{}
	poke    chan struct{} // refresh the metadata now
	// refreshing is set once refreshMeta runs (gossip started); guarded by mu.
	refreshing bool
}

// metaInterval is how often the node refreshes its gossiped metadata
// (health summary, load, config version); unchanged metadata is not sent.
const metaInterval = time.Second

// newCluster makes the node's membership when the node file asks for
// gossip, without starting it: raft subscribes to its events first, and
// gossip starts last (startGossip), so a node that fails to start never
// joins and leaves no phantom member behind (issue 12).
func (n *Node) newCluster() error {
	if !n.cfg.Clustered() {
		return nil
	}
	// The node file passed this check in New; the bound addresses are
	// known now (a host name resolved), so it is exact.
	if err := n.checkMetaSize(n.meta(membership.StateStarting)); err != nil {
		return err
	}
	key, err := n.cfg.GossipKeyBytes()
	if err != nil {
		return err
	}
	mc, err := membership.New(membership.Config{
		Name: n.cfg.Name, BindAddr: n.cfg.GossipAddr, AdvertiseAddr: n.adv.Gossip, Join: n.cfg.Join,
		SecretKey: key, Label: n.cfg.ClusterName, Profile: membership.Profile(n.cfg.GossipProfile),
		ReapAfter: n.cfg.ReapAfter, WrapTransport: n.gossipTransport(),
		Meta: n.meta(membership.StateStarting), Logger: n.baseLog.With("part", "membership"),
	})
	if err != nil {
		return err // membership's errors carry "membership:" already
	}
	n.cluster.Store(&clusterPart{members: mc, stop: make(chan struct{}), done: make(chan struct{}), poke: make(chan struct{}, 1)})
	return nil
}

// startGossip binds gossip and starts joining the seeds, announcing the
// node as it is now (its state by metaState, its raft address): an update
// racing the join could be lost (hashicorp/memberlist#263), so the first
// one comes later, if anything changes.
func (n *Node) startGossip() error {
	p := n.cluster.Load()
	if p == nil {
		return nil
	}
	if err := n.checkClusterAdvertised(); err != nil {
		return err
	}
	p.members.UpdateMeta(func(m *membership.Meta) { *m = n.meta(n.metaState()) })
	if err := p.members.Start(); err != nil {
		return inUse(err, "gossip_addr", "--gossip-addr") // membership's errors carry "membership:" already
	}
	p.mu.Lock()
	p.refreshing = true
	p.mu.Unlock()
	n.followMembers(p.members) // the rate limiter's and the cache's ring from now on, or once it rejoined
	go n.refreshMeta(p)
	n.log.Info("gossip started", "addr", p.members.Addr(), "join", n.cfg.Join, "profile", n.cfg.GossipProfile)
	if key, _ := n.cfg.GossipKeyBytes(); len(key) == 0 && gossipExposed(n.cfg.GossipAddr, p.members.Addr()) {
		n.log.Warn("gossip has no gossip_key: whoever reaches the gossip port can join as a member, be listed in status and take ring shares "+
			"(shared cache and global rate-limit keys, which the nodes then ask it for; with cluster_tls those calls fail); keep it on a private network or set gossip_key",
			"addr", p.members.Addr(), "bind", n.cfg.GossipAddr, "fix", gossipKeyFix)
	}
	return nil
}

// selfCheckTimeout bounds checkClusterAdvertised's call.
const selfCheckTimeout = 3 * time.Second

// checkClusterAdvertised asks the cluster address this node is about to
// gossip who answers there (node.status), before the others are told it.
// Another node's name means a node file copied with its
// cluster_advertise_addr, cluster_addr or advertise_addr (a cluster port
// bound to every address is advertised at its IP): the others would send this
// node's cache, rate-limit, config and raft calls to that node, which
// answers them as itself. That stops the start, naming the setting. No
// answer from here (a firewall, NAT without hairpin) is only logged: the
// others may still reach it. On a hand-off upgrade the predecessor, which
// shares the socket, answers with this node's name.
func (n *Node) checkClusterAdvertised() error {
	addr := n.adv.Cluster(n.RPCAddr())
	if addr == "" || n.rpcClient == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), selfCheckTimeout)
	defer cancel()
	var rs RPCStatus
	if err := n.rpcClient.Call(ctx, addr, rpcStatusMethod, &rpcEmpty{}, &rs); err != nil {
		n.log.Warn("the advertised cluster address does not answer from this host; the other nodes must reach it "+
			"for cache, rate-limit and config calls (and raft)", "addr", addr, "err", err)
		return nil
	}
	if rs.Name != n.cfg.Name {
		return fmt.Errorf("cluster address %s, which this node would advertise, reaches node %q, not this node (bound at %s): %s",
			addr, rs.Name, n.RPCAddr(), n.clusterAddrFix())
	}
	return nil
}

// clusterAddrFix names the setting that made the advertised cluster
// address, for checkClusterAdvertised's error. A cluster port bound to
// every address (the default with join) is advertised at the node's
// advertise IP, so a node file copied with another node's advertise_addr
// and nothing else gets that node's cluster address too: this check, which
// runs before gossip's, is the one that finds it, and the operator must be
// told to change advertise_addr, which is in the file, not
// cluster_advertise_addr or cluster_addr, which are not.
func (n *Node) clusterAddrFix() string {
	if n.cfg.ClusterAdvertiseAddr != "" {
		return "give this node its own cluster_advertise_addr (or leave it unset: the cluster port is then advertised at the node's advertise IP)"
	}
	host, _, _ := net.SplitHostPort(n.RPCAddr())
	if ip, err := netip.ParseAddr(host); host != "" && (err != nil || !ip.IsUnspecified()) {
		return "give this node its own cluster_addr" // bound to one IP, advertised at it
	}
	if n.cfg.AdvertiseAddr != "" {
		return fmt.Sprintf("advertise_addr %s is not this node's: the cluster port binds every address and is advertised at advertise_addr's IP, "+
			"so give this node its own advertise_addr (or set cluster_advertise_addr)", n.cfg.AdvertiseAddr)
	}
	return fmt.Sprintf("the cluster port binds every address and is advertised at this node's IP %s, which reaches another node: "+
		"set advertise_addr to the IP the other nodes reach this one at (or set cluster_advertise_addr)", n.adv.IP)
}

// gossipKeyFix is how to set a gossip key, for the warning above.
const gossipKeyFix = "give every node the same gossip_key in its node file, or PINGORA_GOSSIP_KEY, " +
	"e.g. from \"openssl rand -base64 32\"; a node with a key and one without cannot gossip, so set it on every node at once (stop, set, start)"

// gossipExposed reports whether gossip can be reached from beyond this
// host: it is bound to, or advertises, an address that is not loopback
// (0.0.0.0 is every interface; a host name counts as exposed).
func gossipExposed(bind, advertised string) bool {
	for _, a := range []string{bind, advertised} {
		if a == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(a)
		if err != nil || !ap.Addr().IsLoopback() {
			return true
		}
	}
	return false
}

// metaState is the state the node announces. Once gossip's drain ran it
// stays draining: the metadata refresh must not announce the node as
// starting again when readiness goes off for the shutdown. Otherwise it is
// ready exactly when /readyz says so (notReady): a node without a cluster
// config, or with one that routes nothing, announces "starting" and stays
// off the ring. Its peers would otherwise make it a key's owner: it knows
// no global rate-limit rule to count by and serves no request whose
// response the shared cache could hold, and /status and the cluster page
// would call ready a node that /readyz keeps out of the load balancer.
// Nothing a node needs to get its config waits for the ring (raft finds
// its servers by gossip liveness and Addrs.Raft, forwarded writes reach
// the leader at the Addrs.Cluster it gossips whatever its state), so a
// new cluster, every node at config version 0, converges once a config
// is applied: each applied version refreshes the metadata at once
// (pokeMeta), the ticker at the latest a metaInterval later.
func (n *Node) metaState() membership.NodeState {
	switch {
	case n.drained.Load():
		return membership.StateDraining
	case n.notReady() == "":
		return membership.StateReady
	}
	return membership.StateStarting
}

// meta describes this node for the others.
func (n *Node) meta(state membership.NodeState) membership.Meta {
	m := n.fixedMeta(state, slices.Collect(maps.Values(n.ListenerAddrs())), n.AdminAddr(), n.RPCAddr())
	if a := n.applied.Load(); a != nil {
		m.ConfigVersion = uint64(a.Version)
	}
	for _, u := range n.router.Table().Upstreams() {
		for _, p := range u.Peers {
			m.Health.Total++
			if p.Healthy {
				m.Health.Healthy++
			}
		}
	}
	m.Load.InFlight = int64(n.srv.ActiveConns())
	if st := n.store.Load(); st != nil {
		m.Addrs.Raft = st.Addr()
		m.RaftState = st.HasState()
		m.ClusterID = st.ClusterID()
		m.RaftRecovering = st.Recovering()
	}
	return m
}

// fixedMeta is the metadata that stays as it is while the node runs, with
// the proxy, admin and cluster ports bound at proxy, admin and cluster.
func (n *Node) fixedMeta(state membership.NodeState, proxy []string, admin, cluster string) membership.Meta {
	m := membership.Meta{Version: n.opts.Version, Zone: n.cfg.Zone, Weight: n.cfg.RingWeight, State: state}
	for _, addr := range proxy {
		if a := n.adv.Addr(addr); a != "" {
			m.Addrs.Proxy = append(m.Addrs.Proxy, a)
		}
	}
	sort.Strings(m.Addrs.Proxy)
	m.Addrs.Admin = n.adv.Admin(admin)
	m.Addrs.Cluster = n.adv.Cluster(cluster)
	return m
}

// checkMetaSize refuses a node whose gossiped metadata could outgrow
// memberlist's 512-byte limit while it runs (membership.CheckMetaSize):
// m, the node's metadata with its fixed fields as they are or will be,
// is checked with every changing field at its largest and the longest
// cluster ID. Without the check such a node would start, then fail to
// update its metadata once a counter or the config version grew, and its
// peers would go on seeing it as it was.
func (n *Node) checkMetaSize(m membership.Meta) error {
	if _, err := n.metaBound(m); err != nil {
		return fmt.Errorf("gossip: %w. Shorten what the node advertises: fewer proxy listeners, or shorter advertised addresses (advertise_addr, cluster_advertise_addr, raft_advertise_addr, admin_advertise_addr), zone or version string", err)
	}
	return nil
}

// metaBound is the size of m's largest encoding (membership.CheckMetaSize)
// once the node holds a cluster ID, when it replicates.
func (n *Node) metaBound(m membership.Meta) (int, error) {
	if n.cfg.Replicated() {
		m.ClusterID = strings.Repeat("f", consensus.ClusterIDLen)
	}
	return membership.CheckMetaSize(m)
}

// worstMeta is the largest metadata the node may gossip, told from its
// node file before it binds anything: a port 0 counts as five digits and
// a host name as the longest IPv6 address it may resolve to. The state,
// counters and flags are left for checkMetaSize to make their largest.
func (n *Node) worstMeta() membership.Meta {
	var proxy []string
	for _, l := range n.cfg.Listeners {
		proxy = append(proxy, widestBound(l.Addr))
	}
	m := n.fixedMeta(membership.StateStarting, proxy, widestBound(n.cfg.AdminAddr), widestBound(n.cfg.ClusterAddr))
	if n.cfg.Replicated() {
		m.Addrs.Raft = n.adv.Cluster(widestBound(n.cfg.ClusterAddr))
		if !n.cfg.RaftShared() {
			m.Addrs.Raft = n.adv.Raft(widestBound(n.cfg.RaftAddr))
		}
	}
	return m
}

// widestBound is the longest address a listener configured at addr may
// report once bound: its port 0 becomes 65535, a host name (not an IP)
// the longest IPv6 address ("localhost" stays loopback).
func widestBound(addr string) string {
	if addr == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if port == "" || port == "0" {
		port = "65535"
	}
	switch _, err := netip.ParseAddr(host); {
	case host == "localhost":
		host = "127.0.0.1"
	case host != "" && err != nil:
		host = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	}
	return net.JoinHostPort(host, port)
}

// logAdvertised says where the other nodes reach this one. (A loopback
// admin_addr needs no warning: followers reach the leader over the
// cluster port, issue 13.)
func (n *Node) logAdvertised() {
	if !n.cfg.Clustered() {
		return
	}
	m := n.meta(membership.StateStarting)
	n.log.Info("advertised addresses", "gossip", n.Members().Addr(), "cluster", m.Addrs.Cluster, "raft", m.Addrs.Raft,
		"admin", m.Addrs.Admin, "proxy", m.Addrs.Proxy)
}

// refreshMeta keeps the gossiped metadata current until the part stops.
func (n *Node) refreshMeta(p *clusterPart) {
	defer close(p.done)
	t := time.NewTicker(metaInterval)
	defer t.Stop()
	for {
		want := n.meta(n.metaState())
		cur := p.members.Meta()
		want.Name = cur.Name
		if !metaEqual(cur, want) {
			p.members.UpdateMeta(func(m *membership.Meta) { *m = want })
		}
		select {
		case <-p.stop:
			return
		case err := <-p.members.Err():
			n.fail(err)
			return
		case <-t.C:
		case <-p.poke:
		}
	}
}

// pokeMeta refreshes the gossiped metadata now rather than at the next
// tick (a new raft address, a new config version).
func (n *Node) pokeMeta() {
	if p := n.cluster.Load(); p != nil {
		select {
		case p.poke <- struct{}{}:
		default:
		}
	}
}

func metaEqual(a, b membership.Meta) bool { return reflect.DeepEqual(a, b) }

// leaveCluster announces draining, then leaves, so peers drop the node at
// once rather than after failure detection.
func (n *Node) leaveCluster(graceful bool) {
	p := n.cluster.Swap(nil)
	if p == nil {
		return
	}
	// A membership the rings were to follow once it rejoined, stopped
	// first (a hand-off again): they follow it if it had rejoined, else
	// keep the ring they have, not its ring of this node alone.
	if rj := n.rejoining.Load(); rj != nil && rj.mc == p.members {
		n.limitMembers()
		n.rejoining.CompareAndSwap(rj, nil)
	}
	close(p.stop)
	p.mu.Lock()
	refreshing := p.refreshing
	p.mu.Unlock()
	if refreshing {
		<-p.done
	}
	if graceful {
		err := p.members.Leave(2 * time.Second)
		if err != nil && !errors.Is(err, membership.ErrNotStarted) && !errors.Is(err, membership.ErrNameConflict) &&
			!errors.Is(err, membership.ErrAddressConflict) {
			n.log.Warn("leaving the cluster", "err", err)
		}
	}
	p.members.Shutdown()
}

// drainCluster marks the node draining in its metadata, taking it off
// every ring while it finishes its requests.
func (n *Node) drainCluster() {
	n.drained.Store(true)
	if p := n.cluster.Load(); p != nil {
		p.members.UpdateMeta(func(m *membership.Meta) { m.State = membership.StateDraining })
	}
}

// fail reports a part that failed for good (another node uses this
// node's name) to whoever runs the node, through Failed.
func (n *Node) fail(err error) {
	n.log.Error("the node cannot go on in the cluster", "err", err)
	select {
	case n.failed <- err:
	default:
	}
}

// Failed receives an error when a part fails for good while the node
// runs: another live node uses this node's name. The caller should stop
// the node and exit non-zero.
func (n *Node) Failed() <-chan error { return n.failed }

// Members returns the node's view of the cluster, or nil when it does not
// gossip.
func (n *Node) Members() *membership.Cluster {
	if p := n.cluster.Load(); p != nil {
		return p.members
	}
	return nil
}
