package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Host is what the advertise resolver needs to know of the machine. Tests
// build one by hand; LocalHost reads this machine's.
type Host struct {
	// Addrs are the addresses of the interfaces that are up, in interface
	// order.
	Addrs []HostAddr
	// DefaultIface names the interface of the IPv4 default route ("" when
	// there is none or it is unknown).
	DefaultIface string
}

// HostAddr is one address of one interface.
type HostAddr struct {
	Iface string
	IP    netip.Addr
}

// sharedSpace is RFC 6598's carrier-grade NAT range, private in practice
// (cloud VPCs and overlay networks use it) though not in net.IP.IsPrivate.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

func isPrivate(ip netip.Addr) bool {
	return ip.IsPrivate() || sharedSpace.Contains(ip)
}

// PrivateIP picks the IP to advertise for ports bound to every address, as
// Consul and memberlist do: a private IPv4 address (RFC 1918 or RFC 6598)
// of the default-route interface (the first, if it has several); else the
// host's only private IPv4 address; else its only private IPv6 (ULA)
// address. It fails when there is none, or several and none on the default
// route, rather than guess.
func (h Host) PrivateIP() (netip.Addr, error) {
	var v4, v6 []HostAddr
	for _, a := range h.Addrs {
		ip := a.IP.Unmap()
		if !isPrivate(ip) {
			continue
		}
		if ip.Is4() {
			if h.DefaultIface != "" && a.Iface == h.DefaultIface {
				return ip, nil
			}
			v4 = append(v4, HostAddr{a.Iface, ip})
		} else {
			v6 = append(v6, HostAddr{a.Iface, ip})
		}
	}
	for _, list := range [][]HostAddr{v4, v6} {
		switch len(list) {
		case 0:
			continue
		case 1:
			return list[0].IP, nil
		}
		var names []string
		for _, a := range list {
			names = append(names, a.IP.String()+" on "+a.Iface)
		}
		return netip.Addr{}, fmt.Errorf("this host has several private addresses (%s) and none on the default route", strings.Join(names, ", "))
	}
	return netip.Addr{}, errors.New("this host has no private address (10/8, 172.16/12, 192.168/16, 100.64/10 or fc00::/7) on an interface that is up")
}

// LocalHost reads this machine's interface addresses and, on Linux, the
// interface of its IPv4 default route.
func LocalHost() (Host, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return Host{}, fmt.Errorf("config: listing interfaces: %w", err)
	}
	var h Host
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
					h.Addrs = append(h.Addrs, HostAddr{Iface: ifc.Name, IP: ip.Unmap()})
				}
			}
		}
	}
	if f, err := os.Open("/proc/net/route"); err == nil {
		h.DefaultIface = defaultRouteIface(f)
		f.Close()
	}
	return h, nil
}

// defaultRouteIface reads /proc/net/route: the interface of the first
// route with destination and mask 0.
func defaultRouteIface(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 8 && fs[1] == "00000000" && fs[7] == "00000000" {
			return fs[0]
		}
	}
	return ""
}
