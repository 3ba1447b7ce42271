package node

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// inUse adds to a bind error that found the address taken what an
// operator does about it: which setting (and flag) chose the address, and
// that the usual holder is another node on the same host (a second
// pingora-node started with the same node file, or a node that has not
// finished stopping). Other errors are returned as they are.
func inUse(err error, setting, flag string) error {
	// memberlist formats its bind error with %v: the text is all there is.
	if err != nil && (errors.Is(err, syscall.EADDRNOTAVAIL) || strings.Contains(err.Error(), syscall.EADDRNOTAVAIL.Error())) {
		return notHere(err, setting, flag)
	}
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) && !strings.Contains(err.Error(), syscall.EADDRINUSE.Error()) {
		return err
	}
	return fmt.Errorf("%w: another process listens there (often another pingora-node on this host, started with the same node file, or one still stopping: ss -ltnp shows which); stop it, or give this node another address with %s (flag %s)",
		err, setting, flag)
}

// notHere adds to a bind error that found no interface with the address
// ("cannot assign requested address") what an operator does about it. A
// node file copied from another host (its gossip_addr, or its bind_addr)
// stopped the start with "cluster_addr: listen tcp 10.0.0.1:7947: bind:
// cannot assign requested address": cluster_addr was never set, it took
// gossip_addr's IP, and nothing said so or which addresses the host has.
func notHere(err error, setting, flag string) error {
	from := ""
	switch setting {
	case "cluster_addr":
		from = ", or, when cluster_addr is unset, bind_addr or gossip_addr, whose IP it takes"
	case "gossip_addr":
		from = ", or, when gossip_addr is unset, bind_addr, whose IP it takes"
	}
	return fmt.Errorf("%w: no interface of this host has that IP (a node file copied from another host, or a mistyped address); "+
		"give this node one of its own addresses (%s), or 0.0.0.0 for every address, with %s (flag %s)%s",
		err, hostAddrs(), setting, flag, from)
}

// hostAddrs lists this host's interface addresses, loopback last, for an
// error message.
func hostAddrs() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil || len(addrs) == 0 {
		return "ip -brief addr lists them"
	}
	var own, loop []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		if ipn.IP.IsLoopback() {
			loop = append(loop, ipn.IP.String())
		} else {
			own = append(own, ipn.IP.String())
		}
	}
	return "this host has " + strings.Join(append(own, loop...), ", ")
}
