// Package remoteip names the client address that the node's per-address
// connection bounds count (the gossip gate, the cluster port's mux).
package remoteip

import "net"

// Bounded is c's remote IP as a per-address bound counts it, or "" for
// loopback (a cluster on one machine, bounded by the totals alone) and for
// an address that is not an IP.
func Bounded(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return ""
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsLoopback() {
		return ""
	}
	return ip.String()
}
