package hostile

// H2Request is an HTTP/2 request head as a client encodes it.
type H2Request struct {
	Name   string
	Fields []Field
	// Split sends the header block as a HEADERS and a CONTINUATION frame.
	Split bool
	// Reason is the pingora_downstream_rejected_total label it must count
	// under (H2Malformed), or "" (H2Accepted).
	Reason string
	// Path and Host are what the h2 layer must hand on (H2Accepted).
	Path, Host string
	// Forwarded, when not "", is the target the upstream must receive
	// instead of Path: the proxy normalises the path (route.CleanPath).
	Forwarded string
}

// Upstream returns the target the upstream must receive.
func (r H2Request) Upstream() string {
	if r.Forwarded != "" {
		return r.Forwarded
	}
	return r.Path
}

// Omit, as a value given to request, removes the pseudo-header field.
const Omit = "\x00omit"

// request is a GET of / for proxy.test over https, its pseudo-header
// fields replaced (or removed, with Omit) by set, then extra.
func request(set map[string]string, extra ...Field) []Field {
	var out []Field
	for _, f := range []Field{{":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {":authority", "proxy.test"}} {
		if v, ok := set[f.Name]; ok {
			if v == Omit {
				continue
			}
			f.Value = v
		}
		out = append(out, f)
	}
	return append(out, extra...)
}

func with(name, value string) map[string]string { return map[string]string{name: value} }

// H2Malformed lists the HTTP/2 request heads the server must refuse with
// RST_STREAM PROTOCOL_ERROR before any handler sees them, each counted
// under Reason: those HTTP/1.1 would read as another request (a space in
// :method or :path, userinfo in :authority, a Host that disagrees), and
// the rest of RFC 9113 section 8's malformed requests. Those marked
// "(framer)" are refused by x/net's Framer itself.
var H2Malformed = []H2Request{
	// :method
	{Name: "method with space", Fields: request(with(":method", "GET /admin")), Reason: "invalid_method"},
	{Name: "method with tab", Fields: request(with(":method", "G\tET")), Reason: "invalid_method"},
	{Name: "method leading space", Fields: request(with(":method", " GET")), Reason: "invalid_method"},
	{Name: "method separator", Fields: request(with(":method", "GE(T")), Reason: "invalid_method"},
	{Name: "method non-ASCII", Fields: request(with(":method", "G\xc3\x8bT")), Reason: "invalid_method"},
	{Name: "method empty", Fields: request(with(":method", "")), Reason: "missing_pseudo_header"},
	{Name: "method missing", Fields: request(with(":method", Omit)), Reason: "missing_pseudo_header"},
	{Name: "method CRLF request line (framer)", Fields: request(with(":method", "GET / HTTP/1.1\r\nHost: evil\r\n\r\nGET")), Reason: "invalid_field_value"},
	{Name: "method NUL (framer)", Fields: request(with(":method", "GET\x00")), Reason: "invalid_field_value"},
	// :path
	{Name: "path with space", Fields: request(with(":path", "/a b")), Reason: "invalid_target"},
	{Name: "path second request line", Fields: request(with(":path", "/ HTTP/1.1")), Reason: "invalid_target"},
	{Name: "path with tab", Fields: request(with(":path", "/a\tb")), Reason: "invalid_target"},
	{Name: "path trailing space", Fields: request(with(":path", "/ ")), Reason: "invalid_target"},
	{Name: "path leading space", Fields: request(with(":path", " /")), Reason: "invalid_target"},
	{Name: "path space in query", Fields: request(with(":path", "/a?b c")), Reason: "invalid_target"},
	{Name: "path fragment", Fields: request(with(":path", "/public#/../admin")), Reason: "invalid_target"},
	{Name: "path relative", Fields: request(with(":path", "a/b")), Reason: "invalid_target"},
	{Name: "path absolute-form", Fields: request(with(":path", "http://evil.test/x")), Reason: "invalid_target"},
	{Name: "path asterisk on GET", Fields: request(with(":path", "*")), Reason: "invalid_target"},
	{Name: "path empty", Fields: request(with(":path", "")), Reason: "missing_pseudo_header"},
	{Name: "path missing", Fields: request(with(":path", Omit)), Reason: "missing_pseudo_header"},
	{Name: "path CRLF (framer)", Fields: request(with(":path", "/a HTTP/1.1\r\nHost: evil\r\n\r\nGET /x")), Reason: "invalid_field_value"},
	{Name: "path LF (framer)", Fields: request(with(":path", "/a\nb")), Reason: "invalid_field_value"},
	{Name: "path NUL (framer)", Fields: request(with(":path", "/a\x00")), Reason: "invalid_field_value"},
	{Name: "path DEL (framer)", Fields: request(with(":path", "/a\x7f")), Reason: "invalid_field_value"},
	{Name: "path control (framer)", Fields: request(with(":path", "/a\x01")), Reason: "invalid_field_value"},
	{Name: "path space split across CONTINUATION", Fields: request(with(":path", "/a b"), Field{"x-pad", "0123456789abcdef"}), Split: true, Reason: "invalid_target"},
	// :scheme
	{Name: "scheme ftp", Fields: request(with(":scheme", "ftp")), Reason: "invalid_scheme"},
	{Name: "scheme upper case", Fields: request(with(":scheme", "HTTPS")), Reason: "invalid_scheme"},
	{Name: "scheme trailing space", Fields: request(with(":scheme", "https ")), Reason: "invalid_scheme"},
	{Name: "scheme empty", Fields: request(with(":scheme", "")), Reason: "missing_pseudo_header"},
	{Name: "scheme missing", Fields: request(with(":scheme", Omit)), Reason: "missing_pseudo_header"},
	// :authority
	{Name: "authority userinfo", Fields: request(with(":authority", "user@proxy.test")), Reason: "invalid_host"},
	{Name: "authority user and password", Fields: request(with(":authority", "user:pass@proxy.test")), Reason: "invalid_host"},
	{Name: "authority userinfo other host", Fields: request(with(":authority", "proxy.test@evil.test")), Reason: "invalid_host"},
	{Name: "authority space", Fields: request(with(":authority", "proxy.test evil.test")), Reason: "invalid_host"},
	{Name: "authority trailing tab", Fields: request(with(":authority", "proxy.test\t")), Reason: "invalid_host"},
	{Name: "authority path", Fields: request(with(":authority", "proxy.test/evil")), Reason: "invalid_host"},
	{Name: "authority bad port", Fields: request(with(":authority", "proxy.test:80x")), Reason: "invalid_host"},
	{Name: "authority empty port", Fields: request(with(":authority", "proxy.test:")), Reason: "invalid_host"},
	{Name: "authority long port", Fields: request(with(":authority", "proxy.test:123456")), Reason: "invalid_host"},
	{Name: "authority two ports", Fields: request(with(":authority", "proxy.test:80:81")), Reason: "invalid_host"},
	{Name: "authority no host", Fields: request(with(":authority", ":443")), Reason: "invalid_host"},
	{Name: "authority open bracket", Fields: request(with(":authority", "[::1")), Reason: "invalid_host"},
	{Name: "authority non-ASCII", Fields: request(with(":authority", "pr\xc3\xb6xy.test")), Reason: "invalid_host"},
	{Name: "authority CRLF (framer)", Fields: request(with(":authority", "proxy.test\r\nX-Injected: 1")), Reason: "invalid_field_value"},
	// Host against :authority
	{Name: "host differs from authority", Fields: request(nil, Field{"host", "evil.test"}), Reason: "host_mismatch"},
	{Name: "host other port", Fields: request(nil, Field{"host", "proxy.test:8443"}), Reason: "host_mismatch"},
	{Name: "two hosts", Fields: request(with(":authority", Omit), Field{"host", "proxy.test"}, Field{"host", "evil.test"}), Reason: "duplicate_host"},
	{Name: "two hosts beside authority", Fields: request(nil, Field{"host", "proxy.test"}, Field{"host", "proxy.test"}), Reason: "duplicate_host"},
	{Name: "host userinfo without authority", Fields: request(with(":authority", Omit), Field{"host", "user@proxy.test"}), Reason: "invalid_host"},
	{Name: "host empty without authority", Fields: request(with(":authority", Omit), Field{"host", ""}), Reason: "invalid_host"},
	{Name: "no authority no host", Fields: request(with(":authority", Omit)), Reason: "missing_host"},
	// pseudo-header fields
	{Name: "duplicate path (framer)", Fields: append(request(nil), Field{":path", "/admin"}), Reason: "invalid_pseudo_header"},
	{Name: "duplicate method (framer)", Fields: append(request(nil), Field{":method", "POST"}), Reason: "invalid_pseudo_header"},
	{Name: "duplicate authority (framer)", Fields: append(request(nil), Field{":authority", "evil.test"}), Reason: "invalid_pseudo_header"},
	{Name: "duplicate scheme (framer)", Fields: append(request(nil), Field{":scheme", "http"}), Reason: "invalid_pseudo_header"},
	{Name: "status in request (framer)", Fields: append(request(nil), Field{":status", "200"}), Reason: "invalid_pseudo_header"},
	{Name: "unknown pseudo-header (framer)", Fields: append(request(nil), Field{":foo", "bar"}), Reason: "invalid_pseudo_header"},
	{Name: "pseudo-header after regular (framer)", Fields: append(request(with(":path", Omit), Field{"accept", "*/*"}), Field{":path", "/"}), Reason: "invalid_pseudo_header"},
	{Name: "protocol without extended CONNECT", Fields: append(request(nil), Field{":protocol", "websocket"}), Reason: "invalid_pseudo_header"},
	{Name: "CONNECT with path", Fields: request(with(":method", "CONNECT")), Reason: "invalid_pseudo_header"},
	{Name: "CONNECT without port", Fields: request(map[string]string{":method": "CONNECT", ":scheme": Omit, ":path": Omit}), Reason: "invalid_host"},
	{Name: "CONNECT userinfo", Fields: request(map[string]string{":method": "CONNECT", ":scheme": Omit, ":path": Omit, ":authority": "u@proxy.test:443"}), Reason: "invalid_host"},
	{Name: "CONNECT no authority", Fields: request(map[string]string{":method": "CONNECT", ":scheme": Omit, ":path": Omit, ":authority": Omit}), Reason: "invalid_host"},
	// field names (all refused by the framer)
	{Name: "name upper case (framer)", Fields: request(nil, Field{"X-Upper", "v"}), Reason: "invalid_field_name"},
	{Name: "name with space (framer)", Fields: request(nil, Field{"x bad", "v"}), Reason: "invalid_field_name"},
	{Name: "name with colon (framer)", Fields: request(nil, Field{"x:y", "v"}), Reason: "invalid_field_name"},
	{Name: "name empty (framer)", Fields: request(nil, Field{"", "v"}), Reason: "invalid_field_name"},
	{Name: "name CRLF (framer)", Fields: request(nil, Field{"x\r\ninjected", "v"}), Reason: "invalid_field_name"},
	{Name: "name non-ASCII (framer)", Fields: request(nil, Field{"x-\xc3\xa9", "v"}), Reason: "invalid_field_name"},
	// field values
	{Name: "value leading space", Fields: request(nil, Field{"x-a", " v"}), Reason: "invalid_field_value"},
	{Name: "value trailing space", Fields: request(nil, Field{"x-a", "v "}), Reason: "invalid_field_value"},
	{Name: "value leading tab", Fields: request(nil, Field{"x-a", "\tv"}), Reason: "invalid_field_value"},
	{Name: "value trailing tab", Fields: request(nil, Field{"x-a", "v\t"}), Reason: "invalid_field_value"},
	{Name: "value only space", Fields: request(nil, Field{"x-a", " "}), Reason: "invalid_field_value"},
	{Name: "cookie trailing space", Fields: request(nil, Field{"cookie", "a=1 "}), Reason: "invalid_field_value"},
	{Name: "value CRLF header injection (framer)", Fields: request(nil, Field{"x-a", "v\r\nX-Injected: 1"}), Reason: "invalid_field_value"},
	{Name: "value LF (framer)", Fields: request(nil, Field{"x-a", "v\nX-Injected: 1"}), Reason: "invalid_field_value"},
	{Name: "value CR (framer)", Fields: request(nil, Field{"x-a", "v\rX"}), Reason: "invalid_field_value"},
	{Name: "value NUL (framer)", Fields: request(nil, Field{"x-a", "v\x00"}), Reason: "invalid_field_value"},
	{Name: "value DEL (framer)", Fields: request(nil, Field{"x-a", "v\x7f"}), Reason: "invalid_field_value"},
	{Name: "value control (framer)", Fields: request(nil, Field{"x-a", "v\x0b"}), Reason: "invalid_field_value"},
	// connection-specific fields and TE
	{Name: "connection", Fields: request(nil, Field{"connection", "close"}), Reason: "connection_specific_field"},
	{Name: "keep-alive", Fields: request(nil, Field{"keep-alive", "300"}), Reason: "connection_specific_field"},
	{Name: "proxy-connection", Fields: request(nil, Field{"proxy-connection", "keep-alive"}), Reason: "connection_specific_field"},
	{Name: "transfer-encoding", Fields: request(nil, Field{"transfer-encoding", "chunked"}), Reason: "connection_specific_field"},
	{Name: "upgrade h2c", Fields: request(nil, Field{"upgrade", "h2c"}, Field{"http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"}), Reason: "connection_specific_field"},
	{Name: "upgrade websocket", Fields: request(nil, Field{"upgrade", "websocket"}), Reason: "connection_specific_field"},
	{Name: "te gzip", Fields: request(nil, Field{"te", "gzip"}), Reason: "invalid_te"},
	{Name: "te list", Fields: request(nil, Field{"te", "trailers, gzip"}), Reason: "invalid_te"},
	// content-length
	{Name: "content-length sign", Fields: request(nil, Field{"content-length", "+0"}), Reason: "invalid_content_length"},
	{Name: "content-length list", Fields: request(nil, Field{"content-length", "0, 0"}), Reason: "invalid_content_length"},
	{Name: "content-length negative", Fields: request(nil, Field{"content-length", "-1"}), Reason: "invalid_content_length"},
	{Name: "content-length hex", Fields: request(nil, Field{"content-length", "0x0"}), Reason: "invalid_content_length"},
	{Name: "content-length empty", Fields: request(nil, Field{"content-length", ""}), Reason: "invalid_content_length"},
	{Name: "content-length twice differing", Fields: request(nil, Field{"content-length", "0"}, Field{"content-length", "1"}), Reason: "invalid_content_length"},
	{Name: "content-length without body", Fields: request(nil, Field{"content-length", "5"}), Reason: "invalid_content_length"},
}

// H2Accepted lists edge cases that are valid and must reach the upstream:
// Path (or Forwarded) and Host are what an HTTP/1.1 upstream reads.
var H2Accepted = []H2Request{
	{Name: "host equal to authority without case", Fields: request(nil, Field{"host", "PROXY.TEST"}), Path: "/", Host: "proxy.test"},
	{Name: "host with the default port", Fields: request(nil, Field{"host", "proxy.test:443"}), Path: "/", Host: "proxy.test"},
	{Name: "host alone", Fields: request(with(":authority", Omit), Field{"host", "proxy.test"}), Path: "/", Host: "proxy.test"},
	{Name: "empty authority and host", Fields: request(with(":authority", ""), Field{"host", "proxy.test"}), Path: "/", Host: "proxy.test"},
	{Name: "authority with port", Fields: request(with(":authority", "proxy.test:8443")), Path: "/", Host: "proxy.test:8443"},
	{Name: "authority IPv6 literal", Fields: request(with(":authority", "[::1]:8443")), Path: "/", Host: "[::1]:8443"},
	// Slashes are merged, as for routing; the first segment is never an authority.
	{Name: "path with double slash", Fields: request(with(":path", "//proxy.test/x")), Path: "//proxy.test/x", Forwarded: "/proxy.test/x", Host: "proxy.test"},
	{Name: "path with encoded dot segment", Fields: request(with(":path", "/x/%2e%2E/%61?q=%61")), Path: "/x/%2e%2E/%61?q=%61", Forwarded: "/a?q=%61", Host: "proxy.test"},
	{Name: "path percent-encoded space", Fields: request(with(":path", "/a%20b?c=%0d%0a")), Path: "/a%20b?c=%0d%0a", Host: "proxy.test"},
	{Name: "path UTF-8", Fields: request(with(":path", "/caf\xc3\xa9")), Path: "/caf\xc3\xa9", Host: "proxy.test"},
	{Name: "OPTIONS asterisk", Fields: request(map[string]string{":method": "OPTIONS", ":path": "*"}), Path: "*", Host: "proxy.test"},
	{Name: "value inner space and tab", Fields: request(nil, Field{"x-a", "a \t b"}), Path: "/", Host: "proxy.test"},
	{Name: "http2-settings without upgrade", Fields: request(nil, Field{"http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"}), Path: "/", Host: "proxy.test"},
}
