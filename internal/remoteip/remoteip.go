// Package remoteip names the client address that the node's per-address
// connection bounds count (the gossip gate, the cluster port's mux, the
// raft port, the admin API).
package remoteip

import (
	"net"
	"net/netip"
)

// Bounded is c's remote IP as a per-address bound counts it: "10.0.0.6",
// or an IPv6 client's /64, "2001:db8:1:2::/64" (see Of); "" for loopback
// (a cluster on one machine, bounded by the totals alone) and for an
// address that is not an IP.
func Bounded(c net.Conn) string {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil || ap.Addr().IsLoopback() {
		return ""
	}
	a := Of(ap.Addr())
	if a.Is4() {
		return a.String()
	}
	return a.String() + "/64"
}

// Of is the client a per-address bound counts a connection from address
// a as: an IPv4 address (and an IPv4-mapped IPv6 one, the same client) as
// it is, an IPv6 address by its /64, the rest zeroed, as the proxy's
// max_conns_per_ip counts it. One host is commonly given a whole /64 (RFC
// 6177) and can take a new address from it for each connection: counted
// by its full address, one IPv6 host held as many connections as it took
// addresses, past every per-address bound.
func Of(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if !a.Is6() {
		return a
	}
	p, _ := a.Prefix(64)
	return p.Addr()
}
