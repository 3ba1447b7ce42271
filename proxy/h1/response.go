package h1

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Response is a parsed response head read from an upstream.
type Response struct {
	Status int
	Reason string
	Major  int
	Minor  int
	Header http.Header
	// ContentLength is the body length, or -1 when the body is chunked or
	// delimited by the connection closing.
	ContentLength int64
	Chunked       bool
	// NoBody reports a response that has no body by rule (1xx, 204, 304,
	// or an answer to HEAD).
	NoBody bool
	// Close reports that the upstream connection cannot be reused.
	Close bool
}

// ReadResponse reads the next response head into resp. method is the method
// of the request it answers (a response to HEAD has no body). Malformed heads
// give a *ParseError with status 502. Bare LF line endings are tolerated here,
// as RFC 9112 2.2 allows a recipient to; everything that could split or
// smuggle a message is not.
func (r *Reader) ReadResponse(resp *Response, method string) error {
	if resp.Header == nil {
		resp.Header = make(http.Header, 16)
	} else {
		clear(resp.Header)
	}
	r.resetArena()
	if err := r.readHead(false, 502); err != nil {
		return err
	}
	s := string(r.head)
	if err := parseStatusLine(s[r.lines[0][0]:r.lines[0][1]], resp); err != nil {
		return err
	}
	if err := r.parseFields(s, resp.Header, 502); err != nil {
		return err
	}
	return resp.finish(method)
}

func parseStatusLine(line string, resp *Response) error {
	if len(line) < 12 || !strings.HasPrefix(line, "HTTP/1.") || line[8] != ' ' {
		return perr(502, "malformed status line")
	}
	switch line[7] {
	case '0':
		resp.Major, resp.Minor = 1, 0
	case '1':
		resp.Major, resp.Minor = 1, 1
	default:
		return perr(502, "unsupported protocol version")
	}
	code := 0
	for i := 9; i < 12; i++ {
		c := line[i]
		if c < '0' || c > '9' {
			return perr(502, "malformed status code")
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return perr(502, "malformed status code")
	}
	resp.Status, resp.Reason = code, ""
	if len(line) > 12 {
		if line[12] != ' ' {
			return perr(502, "malformed status line")
		}
		resp.Reason = line[13:]
		if _, ok := fieldValue(resp.Reason); !ok {
			return perr(502, "invalid character in reason phrase")
		}
	}
	return nil
}

func (resp *Response) finish(method string) error {
	h := resp.Header
	resp.ContentLength, resp.Chunked = -1, false
	resp.NoBody = method == "HEAD" || resp.Status < 200 || resp.Status == 204 || resp.Status == 304
	conn := h["Connection"]
	if resp.Minor == 0 {
		resp.Close = !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	} else {
		resp.Close = httpguts.HeaderValuesContainsToken(conn, "close")
	}
	te, cl := h["Transfer-Encoding"], h["Content-Length"]
	if len(te) > 0 && resp.Minor == 0 {
		// RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding MUST
		// be treated as if its framing were faulty, Content-Length or
		// not; for a response that is 502 and the connection closed
		// (6.3). It was read until the upstream closed and its chunked
		// bytes served as the content (nginx 1.22 decodes them as
		// chunked; an HTTP/1.0 server does not send chunks).
		return perr(502, "Transfer-Encoding in an HTTP/1.0 response")
	}
	if len(te) > 0 {
		// RFC 9112 6.3: Transfer-Encoding overrides Content-Length, and the
		// Content-Length must not be forwarded; the connection is suspect.
		if len(cl) > 0 {
			delete(h, "Content-Length")
			resp.Close = true
		}
		if resp.Minor == 1 && !resp.NoBody && !onlyChunked(te) {
			// Another coding (gzip, chunked; gzip; x-foo) would reach the
			// client still applied while the field that names it is
			// dropped (hop-by-hop): gzip bytes served, and cached, as the
			// content itself. nginx refuses these too.
			return perr(502, "unsupported transfer coding in response")
		}
		if resp.Minor == 1 && isChunkedFinal(te) {
			resp.Chunked = true
		} else {
			resp.Close = true // read until the upstream closes
		}
		return nil
	}
	if len(cl) == 0 {
		if !resp.NoBody {
			resp.Close = true
		}
		return nil
	}
	n, ok := parseContentLength(cl[0])
	for _, v := range cl[1:] {
		if v != cl[0] {
			ok = false
		}
	}
	if !ok {
		return perr(502, "invalid Content-Length in response")
	}
	if len(cl) > 1 {
		h["Content-Length"] = cl[:1]
	}
	resp.ContentLength = n
	return nil
}

// onlyChunked reports whether te lists one coding, chunked.
func onlyChunked(te []string) bool {
	return len(te) == 1 && strings.EqualFold(strings.TrimSpace(te[0]), "chunked")
}

// isChunkedFinal reports whether chunked is the last coding listed.
func isChunkedFinal(te []string) bool {
	last := te[len(te)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(last), "chunked")
}
