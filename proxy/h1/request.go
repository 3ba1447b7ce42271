package h1

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Request is a parsed request head. A Reader fills the same Request again for
// each message on a connection; values from a previous message are gone once
// ReadRequest is called again.
type Request struct {
	Method string
	// Target is the request-target exactly as received.
	Target string
	// Path is the path of Target (origin-form or absolute-form), without the query.
	Path string
	// RawQuery is the query of Target without the '?'.
	RawQuery string
	// Host is the authority: from an absolute-form target, else the Host header.
	Host string
	// Major and Minor are the protocol version (1.0 or 1.1).
	Major, Minor int
	Header       http.Header
	// ContentLength is the body length; -1 when the body is chunked.
	ContentLength int64
	Chunked       bool
	// Close reports that the connection must close after this exchange.
	Close bool
	// ExpectContinue reports "Expect: 100-continue".
	ExpectContinue bool
	// Upgrade holds the Upgrade header value when Connection lists "upgrade".
	Upgrade string
}

// ReadRequest reads and validates the next request head into req. It returns
// io.EOF when the client closed the connection between requests, and a
// *ParseError for a malformed or refused head.
func (r *Reader) ReadRequest(req *Request) error {
	if req.Header == nil {
		req.Header = make(http.Header, 16)
	} else {
		clear(req.Header)
	}
	r.resetArena()
	if err := r.readHead(true, 431); err != nil {
		return err
	}
	s := string(r.head)
	if err := parseRequestLine(s[r.lines[0][0]:r.lines[0][1]], req); err != nil {
		return err
	}
	if err := r.parseFields(s, req.Header, 400); err != nil {
		return err
	}
	return req.finish()
}

func parseRequestLine(line string, req *Request) error {
	sp1 := strings.IndexByte(line, ' ')
	if sp1 <= 0 {
		return rerr(400, CodeMalformedRequestLine, "malformed request line")
	}
	rest := line[sp1+1:]
	sp2 := strings.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return rerr(400, CodeMalformedRequestLine, "malformed request line")
	}
	req.Method, req.Target = line[:sp1], rest[:sp2]
	proto := rest[sp2+1:]
	if !isToken(req.Method) {
		return rerr(400, CodeInvalidMethod, "invalid method")
	}
	switch proto {
	case "HTTP/1.1":
		req.Major, req.Minor = 1, 1
	case "HTTP/1.0":
		req.Major, req.Minor = 1, 0
	default:
		if strings.HasPrefix(proto, "HTTP/") && len(proto) == 8 && proto[6] == '.' {
			return rerr(505, CodeUnsupportedVersion, "unsupported protocol version %q", proto)
		}
		return rerr(400, CodeMalformedRequestLine, "malformed request line")
	}
	if !validTargetBytes(req.Target) {
		return rerr(400, CodeInvalidTarget, "invalid character in request target")
	}
	if ParamHidesSlash(req.Target) {
		return rerr(400, CodeInvalidTarget, "a path parameter (';') holds an encoded slash")
	}
	if ParamOnDotSegment(req.Target) {
		return rerr(400, CodeInvalidTarget, "a dot segment has a path parameter (';')")
	}
	if SlashHidesDotSegment(req.Target) {
		return rerr(400, CodeInvalidTarget, "an encoded slash bounds a dot segment")
	}
	if PercentUHidesPathChar(req.Target) {
		return rerr(400, CodeInvalidTarget, "a dot or slash spelt %%uNNNN (IIS reads it)")
	}
	return splitTarget(req)
}

// splitTarget derives Path, RawQuery and, for absolute-form, Host.
func splitTarget(req *Request) error {
	t := req.Target
	req.Host = ""
	switch {
	case t[0] == '/':
	case t == "*" && req.Method == "OPTIONS":
		req.Path, req.RawQuery = "*", ""
		return nil
	case req.Method == "CONNECT":
		if !validConnectAuthority(t) {
			return rerr(400, CodeInvalidTarget, "CONNECT target is not host:port")
		}
		req.Host, req.Path, req.RawQuery = t, "", ""
		return nil
	default:
		var rest string
		if len(t) > 7 && strings.EqualFold(t[:7], "http://") {
			rest = t[7:]
		} else if len(t) > 8 && strings.EqualFold(t[:8], "https://") {
			rest = t[8:]
		} else {
			return rerr(400, CodeInvalidTarget, "invalid request target")
		}
		slash := strings.IndexAny(rest, "/?")
		if slash < 0 {
			req.Host, t = rest, "/"
		} else {
			req.Host, t = rest[:slash], rest[slash:]
			if t[0] == '?' {
				t = "/" + t
			}
		}
		if !ValidAuthority(req.Host) {
			return rerr(400, CodeInvalidTarget, "invalid authority in request target")
		}
	}
	if q := strings.IndexByte(t, '?'); q >= 0 {
		req.Path, req.RawQuery = t[:q], t[q+1:]
	} else {
		req.Path, req.RawQuery = t, ""
	}
	return nil
}

// finish applies the framing and connection rules of RFC 9112 to the parsed
// fields, refusing every ambiguity a downstream parser could read otherwise.
func (req *Request) finish() error {
	h := req.Header
	if err := req.finishHost(h["Host"]); err != nil {
		return err
	}
	cl, te := h["Content-Length"], h["Transfer-Encoding"]
	req.ContentLength, req.Chunked = 0, false
	switch {
	case len(te) > 0 && len(cl) > 0:
		return rerr(400, CodeContentLengthAndTE, "both Content-Length and Transfer-Encoding")
	case len(te) > 0:
		if req.Minor == 0 {
			return rerr(400, CodeInvalidTransferEncoding, "Transfer-Encoding in an HTTP/1.0 request")
		}
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			if len(te) == 1 && isToken(te[0]) {
				return rerr(501, CodeInvalidTransferEncoding, "unsupported transfer coding %q", te[0])
			}
			return rerr(400, CodeInvalidTransferEncoding, "invalid Transfer-Encoding")
		}
		req.Chunked, req.ContentLength = true, -1
	case len(cl) > 1:
		return rerr(400, CodeInvalidContentLength, "duplicate Content-Length")
	case len(cl) == 1:
		n, ok := parseContentLength(cl[0])
		if !ok {
			return rerr(400, CodeInvalidContentLength, "invalid Content-Length %q", cl[0])
		}
		req.ContentLength = n
	}
	return req.finishConnection(h)
}

func (req *Request) finishHost(hosts []string) error {
	if len(hosts) > 1 {
		return rerr(400, CodeDuplicateHost, "duplicate Host header")
	}
	if len(hosts) == 0 {
		if req.Minor == 1 && req.Host == "" {
			return rerr(400, CodeMissingHost, "missing Host header")
		}
	} else if req.Host == "" {
		req.Host = hosts[0]
	}
	if req.Host != "" && !ValidAuthority(req.Host) {
		return rerr(400, CodeInvalidHost, "invalid Host")
	}
	return nil
}

func (req *Request) finishConnection(h http.Header) error {
	conn := h["Connection"]
	if req.Minor == 0 {
		req.Close = !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	} else {
		req.Close = httpguts.HeaderValuesContainsToken(conn, "close")
	}
	req.Upgrade = ""
	if up := h["Upgrade"]; len(up) > 0 && req.Minor == 1 && httpguts.HeaderValuesContainsToken(conn, "upgrade") {
		// Every offer counts: a proxy that read only the first field would
		// let a second one reach the upstream unchecked.
		req.Upgrade = strings.Join(up, ", ")
	}
	req.ExpectContinue = false
	if ex := h["Expect"]; len(ex) > 0 {
		if len(ex) != 1 || !strings.EqualFold(ex[0], "100-continue") {
			return rerr(417, CodeUnsupportedExpectation, "unsupported expectation")
		}
		req.ExpectContinue = req.Minor == 1
	}
	return nil
}

// parseContentLength accepts 1*DIGIT only: no sign, no spaces, no list.
func parseContentLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
