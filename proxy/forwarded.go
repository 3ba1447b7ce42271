package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Forwarding fields and trusted proxies.
//
// A request's forwarding fields tell the origin how the client reached the
// edge: X-Forwarded-For (the addresses on the way), -Proto (the scheme),
// -Host (the authority), RFC 7239's Forwarded (all three in one field), and
// the rest of the family origins read (X-Forwarded-Port, -Prefix, -Scheme,
// -Ssl, -Client-Cert, X-Real-IP). Only a proxy in front of this one can say
// any of that truthfully; a client that writes them lies about hops that
// never were. An origin that builds links from the first X-Forwarded-Host
// (Express, Spring, Django with USE_X_FORWARDED_HOST) then made a page with
// links to the client's host, and a caching route stored that page under a
// key without the field and served it to everyone (unkeyed-header cache
// poisoning).
//
// So, as Envoy does at the edge (use_remote_address, xff_num_trusted_hops
// 0) and nginx with proxy_set_header: a listener believes these fields
// only from the networks in ListenerConfig.TrustedProxies (default none).
// From any other client they are removed as the request arrives
// (dropForwarding), before the phases, the cache key, the rate limiter,
// a background refresh or another node's fill see the request; the
// upstream request then carries X-Forwarded-For, -Proto and -Host as this
// proxy saw the connection (buildUpstreamRequest), one value each, and no
// Forwarded. From a trusted proxy they pass on, and this proxy appends its
// own values to X-Forwarded-For, -Proto and -Host, so a node behind a load
// balancer keeps the balancer's scheme and host first in line.

// trustedPeer reports whether the connection's peer address a lies in one
// of nets. IPv4 peers are matched in their IPv4 form, an IPv4-mapped IPv6
// address unmapped first, as clientIP prints them; a zone is ignored. A
// peer that is not an IP address (a Unix socket) is never trusted.
func trustedPeer(nets []netip.Prefix, a net.Addr) bool {
	if len(nets) == 0 {
		return false
	}
	var ip netip.Addr
	if ta, ok := a.(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr()
	} else {
		return false
	}
	return prefixesContain(nets, ip.Unmap().WithZone(""))
}

// forwardedClient returns the client that the trusted proxies nets in
// front report in X-Forwarded-For: the rightmost address not in nets
// (nginx's real_ip_recursive), "" when the field says nothing usable (no
// address, only trusted ones, or an entry that is no IP address before
// an untrusted one is found).
func forwardedClient(nets []netip.Prefix, h http.Header) string {
	lines := h["X-Forwarded-For"]
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		for rest != "" {
			var item string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				item, rest = rest[j+1:], rest[:j]
			} else {
				item, rest = rest, ""
			}
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			ip, err := netip.ParseAddr(item)
			if err != nil {
				return ""
			}
			ip = ip.Unmap().WithZone("")
			if !prefixesContain(nets, ip) {
				return ip.String()
			}
		}
	}
	return ""
}

func prefixesContain(nets []netip.Prefix, ip netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// dropForwarding removes, in place, the forwarding fields an untrusted
// client sent (isForwardingField). One pass over the request's keys: a
// request without such fields loses nothing and allocates nothing.
func dropForwarding(h http.Header) {
	for k := range h {
		if isForwardingField(k) {
			delete(h, k)
		}
	}
}

// isForwardingField reports whether the canonical key k names a field in
// which a client speaks for the hops before this proxy: Forwarded,
// X-Real-Ip, or any X-Forwarded-*. Spellings with '_' for '-' count too
// ("X_forwarded_host"): CGI-style origins (PHP, WSGI, Rack) read both as
// HTTP_X_FORWARDED_HOST, and which one wins is up to the server.
func isForwardingField(k string) bool {
	if len(k) < len("Forwarded") {
		return false
	}
	switch k[0] {
	case 'X', 'x':
		return len(k) > len("X-Forwarded-") && fieldNameIs(k[:len("X-Forwarded-")], "x-forwarded-") ||
			fieldNameIs(k, "x-real-ip")
	case 'F', 'f':
		return fieldNameIs(k, "forwarded")
	}
	return false
}

// fieldNameIs reports whether the field name k spells want (lower case,
// '-' between words) in any case, with '_' or '-' between words.
func fieldNameIs(k, want string) bool {
	if len(k) != len(want) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}
