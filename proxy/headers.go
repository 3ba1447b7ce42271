package proxy

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// isHopByHop reports whether the canonical header key k is hop-by-hop by
// rule (RFC 9110 7.6.1), apart from the fields Connection names.
// HTTP2-Settings belongs to an h2c upgrade (RFC 7540 section 3.2), which is
// never forwarded: it goes even when Connection does not name it.
func isHopByHop(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Te", "Transfer-Encoding", "Upgrade", "Host", "Http2-Settings":
		return true
	}
	return strings.HasPrefix(k, "Proxy-")
}

// forbiddenTrailers are the fields a trailer section must not carry (RFC
// 9110 section 6.5.1): a recipient acting on them there, after the head,
// would reframe, reroute or reauthorize a message already under way. The
// hop-by-hop fields (isHopByHop: Connection, TE, Upgrade, Proxy-*, ...) go
// too.
var forbiddenTrailers = map[string]bool{
	// framing and routing
	"Content-Length": true, "Transfer-Encoding": true, "Trailer": true, "Host": true,
	// request modifiers
	"Cache-Control": true, "Expect": true, "Max-Forwards": true, "Pragma": true, "Range": true,
	"If-Match": true, "If-None-Match": true, "If-Modified-Since": true, "If-Unmodified-Since": true, "If-Range": true,
	// authentication
	"Authorization": true, "Www-Authenticate": true, "Authentication-Info": true, "Realm": true,
	"Cookie": true, "Set-Cookie": true,
	// response control data
	"Age": true, "Expires": true, "Date": true, "Location": true, "Retry-After": true, "Vary": true, "Warning": true,
	// content processing
	"Content-Encoding": true, "Content-Type": true, "Content-Range": true,
}

// forbiddenTrailer reports whether the canonical key k may not be a
// trailer field. The forwarding fields (isForwardingField) go too: this
// proxy writes them in the head, removing an untrusted client's, and a
// trailer section has no place for its values; an origin that merges
// trailers into the head (Apache httpd's MergeTrailers, Tomcat's
// allowedTrailerHeaders, CVE-2013-5704's class) took a client's
// "X-Forwarded-For: 1.2.3.4" trailer for a hop this proxy reported.
func forbiddenTrailer(k string) bool {
	return forbiddenTrailers[k] || isHopByHop(k) || isForwardingField(k)
}

// dropForbiddenTrailers removes from the trailer section h, in place, the
// fields forbidden there. Proxies pass trailers on both ways, so each
// direction calls it once, on the section as it leaves: a peer that would
// merge such a field is never handed one.
func dropForbiddenTrailers(h http.Header) {
	for k := range h {
		if forbiddenTrailer(k) {
			delete(h, k)
		}
	}
}

// dropForbiddenTrailerNames removes the forbidden names from the Trailer
// field of head h, which announces the trailers to come: some clients
// (Go's among them) fail a response announcing Content-Length, and an
// HTTP/2 upstream request announcing it fails before it is sent.
func dropForbiddenTrailerNames(h http.Header) {
	vals := h["Trailer"]
	if len(vals) == 0 {
		return
	}
	bad := false
	for _, v := range vals {
		for _, k := range strings.Split(v, ",") {
			if forbiddenTrailer(http.CanonicalHeaderKey(strings.TrimSpace(k))) {
				bad = true
			}
		}
	}
	if !bad {
		return
	}
	var keep []string
	for _, v := range vals {
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" && !forbiddenTrailer(http.CanonicalHeaderKey(k)) {
				keep = append(keep, k)
			}
		}
	}
	if len(keep) == 0 {
		delete(h, "Trailer")
		return
	}
	h["Trailer"] = []string{strings.Join(keep, ", ")}
}

// namedByConnection reports whether k is listed in the Connection values.
func namedByConnection(conn []string, k string) bool {
	for _, v := range conn {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(tok), k) {
				return true
			}
		}
	}
	return false
}

// dropConnectionNamed removes from the request fields h the fields its
// Connection names, as they arrive: they are for this hop only and never
// reach the upstream (copyEndToEnd), so nothing else may act on them
// either. The cache key and the Vary match read the request's fields: a
// named X-Tenant made them file the origin's answer for no tenant under
// tenant a's key. Fields the proxy itself handles for this hop stay
// (Upgrade, TE, and Content-Length, which framed the body); Connection
// stays too, for the hop's own tokens. So do the forwarding fields
// (isForwardingField): an untrusted client's are removed anyway
// (dropForwarding), and a trusted proxy's say who its client is, which
// no proxy names in its own Connection. A token naming one came from the
// client, through a balancer that passes the client's Connection on
// (nginx with "proxy_set_header Connection $http_connection", common for
// WebSocket): "Connection: X-Forwarded-For" removed the balancer's
// report, so the origin saw the request come from the balancer's own,
// internal address, and the rate limiter counted the client as the
// balancer (hop-by-hop field abuse).
func dropConnectionNamed(h http.Header) {
	for _, v := range h["Connection"] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			tok = strings.TrimSpace(tok)
			switch {
			case tok == "", strings.EqualFold(tok, "close"), strings.EqualFold(tok, "keep-alive"),
				strings.EqualFold(tok, "upgrade"), strings.EqualFold(tok, "te"):
				continue // the common tokens, without a canonical key made for each
			}
			if k := http.CanonicalHeaderKey(tok); !isHopByHop(k) && k != "Content-Length" && !isForwardingField(k) {
				delete(h, k)
			}
		}
	}
}

// copyEndToEnd copies the end-to-end fields of src into dst. Forwarding
// fields go whatever Connection names (see dropConnectionNamed).
func copyEndToEnd(dst, src http.Header) {
	conn := src["Connection"]
	for k, v := range src {
		if isHopByHop(k) || len(conn) > 0 && namedByConnection(conn, k) && !isForwardingField(k) {
			continue
		}
		dst[k] = v
	}
}

// stripHopByHop removes the hop-by-hop fields of h in place.
func stripHopByHop(h http.Header) {
	conn := h["Connection"]
	for k := range h {
		if isHopByHop(k) || len(conn) > 0 && namedByConnection(conn, k) {
			delete(h, k)
		}
	}
}

// buildUpstreamRequest fills dst with this attempt's copy of the client's
// request: end-to-end fields only, forwarding fields appended, and the
// upgrade fields when the request upgrades the connection. An untrusted
// client's forwarding fields were removed as its request arrived
// (dropForwarding), so for it the append sets X-Forwarded-For, -Proto and
// -Host to this proxy's values alone; a trusted proxy's, a background
// refresh's and another node's fill (whose asking node removed them
// already) keep theirs first.
func buildUpstreamRequest(s *Session, dst *RequestHeader, scheme, via string, upgrade string) {
	src := s.Req
	dst.Method, dst.URI, dst.Host = src.Method, src.URI, src.Host
	dst.ProtoMajor, dst.ProtoMinor = src.ProtoMajor, src.ProtoMinor
	if dst.Header == nil {
		dst.Header = make(http.Header, len(src.Header)+4)
	} else {
		clear(dst.Header)
	}
	h := dst.Header
	copyEndToEnd(h, src.Header)
	dropForbiddenTrailerNames(h)
	if httpguts.HeaderValuesContainsToken(src.Header["Te"], "trailers") {
		h["Te"] = teTrailers
	}
	// A field the client did not send takes its value slice from the
	// session, reused request after request, rather than a new one.
	appendFieldIn(h, "X-Forwarded-For", s.ClientIP, &s.fwdVals[0])
	appendFieldIn(h, "X-Forwarded-Proto", scheme, &s.fwdVals[1])
	appendFieldIn(h, "X-Forwarded-Host", src.Host, &s.fwdVals[2])
	if via != "" {
		appendFieldIn(h, "Via", via, &s.fwdVals[3])
	}
	if upgrade != "" {
		h["Connection"] = connUpgrade
		h["Upgrade"] = []string{upgrade}
	}
}

var (
	teTrailers  = []string{"trailers"}
	connUpgrade = []string{"Upgrade"}
)

// appendField appends v to the comma-separated list in field k, folding
// repeated fields into one.
func appendField(h http.Header, k, v string) {
	old := h[k]
	switch len(old) {
	case 0:
		h[k] = []string{v}
	case 1:
		h[k] = []string{old[0] + ", " + v}
	default:
		h[k] = []string{strings.Join(old, ", ") + ", " + v}
	}
}

// appendFieldIn is appendField storing a new field's value in *slot.
// The slot is written only when its value changes: a failed HTTP/2
// attempt leaves its header map, which may name the slot, with the
// transport, whose writer may still read it while the next attempt
// rebuilds the fields (h2RoundTrip), with the same values.
func appendFieldIn(h http.Header, k, v string, slot *[1]string) {
	if len(h[k]) == 0 {
		if slot[0] != v {
			slot[0] = v
		}
		h[k] = slot[:]
		return
	}
	appendField(h, k, v)
}

// viaValue is the Via field value for a proxy named name.
func viaValue(proto int, name string) string {
	if name == "" {
		return ""
	}
	if proto == 2 {
		return "2 " + name
	}
	return "1.1 " + name
}
