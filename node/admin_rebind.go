package node

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
)

// A web page can read the admin API of the operator's own machine by DNS
// rebinding: its name, first resolved to the attacker's server, is
// resolved again to 127.0.0.1, and the page's script then reads
// http://evil.example:9090/v1/config as if same-origin, from a loopback
// client, past any firewall. Writes were guarded (adminWrite); reads were
// not: /status, /v1/config, /v1/cluster (every member's status, gathered
// by this node), /metrics and /v1/cache/stats answered the page. So a
// request from a loopback client must name this machine in its Host: an
// IP address, localhost (or a name under .localhost), the host name, or
// the host of admin_advertise_addr. A page rebound to 127.0.0.1 has the
// attacker's name there and nothing else, and cannot attach the admin
// token, which also admits the request (a reverse proxy on the same host
// that passes its clients' Host on, with the token).

// rebindGuard refuses loopback requests whose Host names another machine
// and carry no valid admin token.
func (n *Node) rebindGuard(h http.Handler) http.Handler {
	names := map[string]bool{}
	if hn, err := os.Hostname(); err == nil && hn != "" {
		names[strings.ToLower(hn)] = true
	}
	if host, _, err := net.SplitHostPort(n.cfg.AdminAdvertiseAddr); err == nil && host != "" {
		names[strings.ToLower(host)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isLoopback(r.RemoteAddr) && !namesThisMachine(r.Host, names) && !n.hasToken(r) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": fmt.Sprintf(
				"refused: Host %q does not name this machine (DNS rebinding?); from loopback, ask for an IP address or localhost, or send the admin token", r.Host)})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// namesThisMachine reports whether a Host field (with or without a port)
// is empty, an IP address, localhost or a name under .localhost (which
// browsers resolve to loopback themselves), or one of names.
func namesThisMachine(host string, names map[string]bool) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost") || names[host]
}

// hasToken reports whether r carries the admin token (none is set: no).
func (n *Node) hasToken(r *http.Request) bool {
	tok := n.cfg.AdminToken
	if tok == "" {
		return false
	}
	got, ok := bearer(r.Header.Get("Authorization"))
	return ok && tokenMatches(got, tok)
}
