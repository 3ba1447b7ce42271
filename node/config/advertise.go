package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Bind and advertise (issue 12). Every port a node opens is bound to one
// address and advertised to the other nodes (in its gossiped metadata) at
// another, as in Consul and memberlist:
//
//	port         bind setting      default bind              advertise override
//	gossip       gossip_addr       bind_addr:7946 (join set) advertise_addr
//	cluster      cluster_addr      bind_addr:7947 (a gossip  cluster_advertise_addr
//	(RPC, raft)                    or raft node; else none)
//	raft alone   raft_addr         none: raft shares cluster raft_advertise_addr
//	admin        admin_addr        127.0.0.1:9090            admin_advertise_addr
//	proxy        listeners[].addr  (required)                none
//
// bind_addr defaults to gossip_addr's IP, else 0.0.0.0 for a gossiping
// node and 127.0.0.1 for one that does not gossip. Without an override, a
// port bound to one IP is advertised at that IP, and a port bound to every
// address (0.0.0.0, ::, or no host) at the node's advertise IP: the IP of
// advertise_addr, else gossip_addr's IP, else the host's private IP
// (Host.PrivateIP). When the node is advertised beyond loopback, a
// loopback raft or cluster address is refused (the others could not reach
// it) and a loopback admin or proxy address is not advertised at all.

// Advertised holds what a node tells the other nodes about where to reach
// each of its ports. Make it with Node.ResolveAdvertise.
type Advertised struct {
	// IP is advertised for every port bound to all addresses.
	IP netip.Addr
	// Gossip is the advertised gossip "ip:port" (port 0: the bound port),
	// or "" when the node does not gossip.
	Gossip string
	// Remote is true when the node is advertised beyond loopback: its peers
	// may be on other hosts, so no loopback address is advertised.
	Remote bool

	raft, cluster, admin string // *_advertise_addr overrides
}

// Raft returns the raft address to advertise for a listener bound at bound.
func (a *Advertised) Raft(bound string) string { return a.pick(a.raft, bound) }

// Cluster returns the cluster RPC address to advertise, or "".
func (a *Advertised) Cluster(bound string) string { return a.pick(a.cluster, bound) }

// Admin returns the admin address to advertise, or "" when the others
// could not reach it (a loopback admin_addr on a node with remote peers).
func (a *Advertised) Admin(bound string) string { return a.pick(a.admin, bound) }

// Addr returns the address to advertise for a port bound at bound (as the
// listener reports it): a wildcard host becomes IP; a loopback host is
// dropped ("") when the node has remote peers.
func (a *Advertised) Addr(bound string) string {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return ""
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case host == "" || err == nil && ip.IsUnspecified():
		return net.JoinHostPort(a.IP.String(), port)
	case a.Remote && isLoopbackHost(host):
		return ""
	}
	return bound
}

func (a *Advertised) pick(override, bound string) string {
	if override != "" {
		return override
	}
	if bound == "" {
		return ""
	}
	return a.Addr(bound)
}

// ResolveAdvertise decides what n advertises for each port, from its
// settings and, when a gossip port binds every address, the host's private
// IP. It expects a validated n.
func (n *Node) ResolveAdvertise(h Host) (*Advertised, error) {
	a := &Advertised{raft: n.RaftAdvertiseAddr, cluster: n.ClusterAdvertiseAddr, admin: n.AdminAdvertiseAddr}
	host, port := splitAdvertise(n.AdvertiseAddr)
	if host == "" && n.Clustered() {
		host, _ = splitAdvertise(n.GossipAddr)
		if isWildcardHost(host) {
			host = ""
		}
	}
	switch {
	case host != "":
		ip, err := netip.ParseAddr(hostIP(host))
		if err != nil {
			return nil, fmt.Errorf("config: advertise_addr: %q is not an IP address", host)
		}
		a.IP = ip
	case n.Clustered():
		ip, err := h.PrivateIP()
		if err != nil {
			return nil, fmt.Errorf("config: advertise_addr: gossip_addr %s binds every address, and %w; set advertise_addr to the IP the other nodes reach this one at", n.GossipAddr, err)
		}
		a.IP = ip
	default:
		a.IP = netip.AddrFrom4([4]byte{127, 0, 0, 1}) // no peers to reach it
	}
	if n.Clustered() {
		if port == "" {
			_, port = splitAdvertise(n.GossipAddr)
		}
		a.Gossip = net.JoinHostPort(a.IP.String(), port)
		a.Remote = !a.IP.IsLoopback()
	}
	return a, nil
}

// checkReachable refuses settings whose advertised raft, cluster or admin
// address the other nodes could not reach: a loopback one while the node
// itself is advertised beyond loopback. It needs no host information: a
// wildcard gossip bind is advertised on a private, never loopback, IP.
func (n *Node) checkReachable(e *errs) {
	if !n.Clustered() {
		return
	}
	gossip := n.AdvertiseAddr
	if gossip == "" {
		gossip = n.GossipAddr
	}
	host, _ := splitAdvertise(gossip)
	if isLoopbackHost(host) {
		n.checkSeedsLocal(e, gossip) // every peer must be on this host
		return
	}
	where := "at " + gossip
	if isWildcardHost(host) {
		where = fmt.Sprintf("on this host's private address (gossip_addr %s binds every address)", n.GossipAddr)
	}
	for _, p := range []struct {
		bind, adv, name string
		needed          bool
	}{
		{"raft_addr", "raft_advertise_addr", "raft", n.DataDir != ""},
		{"cluster_addr", "cluster_advertise_addr", "cluster RPC", true},
		{"admin_addr", "admin_advertise_addr", "admin API", false},
	} {
		field, val := p.adv, n.addrField(p.adv)
		if val == "" && p.needed {
			field, val = p.bind, n.addrField(p.bind)
		}
		if h, _ := splitAdvertise(val); val != "" && isLoopbackHost(h) {
			e.add(field, "%s is a loopback address, but the other nodes reach this node %s, so they could not reach its %s; %s",
				val, where, p.name, fixHint(field))
		}
	}
}

// checkSeedsLocal refuses a loopback gossip address beside a seed given as
// an IP that is not loopback: the node would join through it (a dial from
// this host reaches it), then be listed by every member at an address none
// of them can reach, dead a moment later and, until then, a ring owner the
// others call in vain. Seeds named by DNS may be this host and pass.
func (n *Node) checkSeedsLocal(e *errs, gossip string) {
	field := "gossip_addr"
	if n.AdvertiseAddr != "" {
		field = "advertise_addr"
	}
	for i, j := range n.Join {
		host, _, err := net.SplitHostPort(j)
		ip, perr := netip.ParseAddr(host)
		if err != nil || perr != nil || ip.Unmap().IsLoopback() || ip.IsUnspecified() {
			continue
		}
		e.add(field, "%s is a loopback address, but join[%d] %s is not: a node there could not reach this node's gossip; set gossip_addr to an address the other nodes reach (0.0.0.0 binds every address), or advertise_addr",
			gossip, i, j)
		return
	}
}

func fixHint(field string) string {
	if strings.HasSuffix(field, "_advertise_addr") {
		return "set " + field + " to an address the other nodes reach, or leave it unset"
	}
	if field == "raft_addr" {
		return "leave raft_addr unset (raft then shares cluster_addr), or set it to an address the other nodes reach"
	}
	return "set " + field + " to an address the other nodes reach (0.0.0.0 binds every address)"
}

func (n *Node) addrField(name string) string {
	switch name {
	case "raft_addr":
		return n.RaftAddr
	case "raft_advertise_addr":
		return n.RaftAdvertiseAddr
	case "cluster_addr":
		return n.ClusterAddr
	case "cluster_advertise_addr":
		return n.ClusterAdvertiseAddr
	case "admin_advertise_addr":
		return n.AdminAdvertiseAddr
	}
	return ""
}

// validateAdvertise checks the bind_addr and *advertise_addr settings.
func (n *Node) validateAdvertise(e *errs) {
	if n.BindAddr != "" {
		if ip, err := netip.ParseAddr(n.BindAddr); err != nil || ip.Zone() != "" {
			e.add("bind_addr", "%q is not an IP address (it names no port: each port has its own setting)", n.BindAddr)
		}
	}
	if a := n.AdvertiseAddr; a != "" {
		host, port := splitAdvertise(a)
		ip, err := netip.ParseAddr(host)
		switch {
		case err != nil:
			e.add("advertise_addr", "%q: %q is not an IP address (\"ip\" or \"ip:port\")", a, host)
		case ip.IsUnspecified():
			e.add("advertise_addr", "%q is a wildcard address: name the IP the other nodes reach this one at", a)
		case port != "":
			if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
				e.add("advertise_addr", "%q: port %q is not a number from 1 to 65535", a, port)
			}
		}
	}
	for _, f := range []struct{ name, v string }{{"raft_advertise_addr", n.RaftAdvertiseAddr},
		{"cluster_advertise_addr", n.ClusterAdvertiseAddr}, {"admin_advertise_addr", n.AdminAdvertiseAddr}} {
		if f.v == "" {
			continue
		}
		if err := checkHostPort(f.v); err != nil {
			e.add(f.name, "%v", err)
		} else if host, port, _ := net.SplitHostPort(f.v); isWildcardHost(host) || port == "0" {
			e.add(f.name, "%q: name the host and port the other nodes dial, not a wildcard or port 0", f.v)
		}
	}
	if h, _ := splitAdvertise(n.GossipAddr); n.GossipAddr != "" && h != "" {
		if _, err := netip.ParseAddr(h); err != nil {
			e.add("gossip_addr", "%q: %q is not an IP address (gossip binds an IP, or every address with 0.0.0.0)", n.GossipAddr, h)
		}
	}
}

// splitAdvertise splits "host:port", "[v6]:port", "host" or "v6" into host
// and port ("" when absent).
func splitAdvertise(a string) (host, port string) {
	if h, p, err := net.SplitHostPort(a); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), ""
}

func isWildcardHost(h string) bool {
	if h == "" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsUnspecified()
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// hostIP maps "localhost" to 127.0.0.1; other hosts are returned as they
// are.
func hostIP(h string) string {
	if h == "localhost" {
		return "127.0.0.1"
	}
	return h
}
