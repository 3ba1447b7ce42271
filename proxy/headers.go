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

// copyEndToEnd copies the end-to-end fields of src into dst.
func copyEndToEnd(dst, src http.Header) {
	conn := src["Connection"]
	for k, v := range src {
		if isHopByHop(k) || len(conn) > 0 && namedByConnection(conn, k) {
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
// upgrade fields when the request upgrades the connection.
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
func appendFieldIn(h http.Header, k, v string, slot *[1]string) {
	if len(h[k]) == 0 {
		slot[0] = v
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
