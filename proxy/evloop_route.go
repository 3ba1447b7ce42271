package proxy

import "net/netip"

// loopable reports whether the event-loop fast path can run a request for
// host and path of RouterApp r to the end: its route (if one matches)
// neither caches nor has a peer the loop cannot dial (TLS, HTTP/2, or an
// address that is not an IP literal). A request that matches no route is
// loopable: the request filter answers it 404.
func (r *Router) loopable(host, path string) bool {
	e, ok := r.table.Load().routes.Match(host, path)
	if !ok {
		return true
	}
	ent := e.Target
	if ent.cfg.Cache != nil {
		return false
	}
	for _, p := range ent.group.cfg.Peers {
		if p.Protocol != HTTP1 || p.TLS {
			return false
		}
		if _, err := netip.ParseAddrPort(p.Addr); err != nil {
			return false
		}
	}
	return true
}
