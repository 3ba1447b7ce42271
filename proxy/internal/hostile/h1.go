package hostile

// H1Request is a raw HTTP/1.1 request head.
type H1Request struct {
	Name, Raw string
	// Status is the status the proxy answers; Reason the
	// pingora_downstream_rejected_total label it counts under.
	Status int
	Reason string
}

const hostX = "Host: x\r\n"

// H1Malformed lists HTTP/1.1 request heads the proxy must answer with
// Status, count under Reason and never forward: the HTTP/1.1 forms of the
// downgrade class (a space or a fragment in the target, userinfo, a Host
// that is not host[:port]) and the request smuggling shapes.
var H1Malformed = []H1Request{
	// request line: method and target
	{"method with space", "GET /admin HTTP/1.1 / HTTP/1.1\r\n" + hostX + "\r\n", 400, "malformed_request_line"},
	{"double space", "GET  / HTTP/1.1\r\n" + hostX + "\r\n", 400, "malformed_request_line"},
	{"target with space", "GET /a b HTTP/1.1\r\n" + hostX + "\r\n", 400, "malformed_request_line"},
	{"tab in target", "GET /a\tb HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_target"},
	{"method separator", "G(T / HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_method"},
	{"method non-ASCII", "G\xc3\x8bT / HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_method"},
	{"fragment in target", "GET /public#/../admin HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_target"},
	{"NUL in target", "GET /a\x00 HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_target"},
	{"DEL in target", "GET /a\x7f HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_target"},
	{"relative target", "GET a/b HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_target"},
	{"asterisk on GET", "GET * HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_target"},
	{"absolute-form userinfo", "GET http://user@proxy.test/ HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_target"},
	{"absolute-form bad port", "GET http://proxy.test:8x/ HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_target"},
	{"absolute-form empty host", "GET http:///x HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_target"},
	{"CONNECT without port", "CONNECT proxy.test HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_target"},
	{"CONNECT userinfo", "CONNECT u@proxy.test:443 HTTP/1.1\r\n" + hostX + "\r\n", 400, "invalid_target"},
	{"HTTP/2.0 request line", "GET / HTTP/2.0\r\n" + hostX + "\r\n", 505, "unsupported_version"},
	{"lower-case version", "GET / http/1.1\r\n" + hostX + "\r\n", 400, "malformed_request_line"},
	// Host
	{"host userinfo", "GET / HTTP/1.1\r\nHost: user@proxy.test\r\n\r\n", 400, "invalid_host"},
	{"host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid_host"},
	{"host with path", "GET / HTTP/1.1\r\nHost: proxy.test/evil\r\n\r\n", 400, "invalid_host"},
	{"host bad port", "GET / HTTP/1.1\r\nHost: proxy.test:80x\r\n\r\n", 400, "invalid_host"},
	{"host empty port", "GET / HTTP/1.1\r\nHost: proxy.test:\r\n\r\n", 400, "invalid_host"},
	{"host two ports", "GET / HTTP/1.1\r\nHost: proxy.test:80:81\r\n\r\n", 400, "invalid_host"},
	{"duplicate host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "duplicate_host"},
	{"missing host", "GET / HTTP/1.1\r\n\r\n", 400, "missing_host"},
	// field lines
	{"bare LF", "GET / HTTP/1.1\r\n" + hostX + "X-A: 1\nX-B: 2\r\n\r\n", 400, "bare_lf"},
	{"obs-fold", "GET / HTTP/1.1\r\n" + hostX + "X-A: a\r\n b\r\n\r\n", 400, "obs_fold"},
	{"space before colon", "GET / HTTP/1.1\r\n" + hostX + "Content-Length : 5\r\n\r\n", 400, "invalid_field_name"},
	{"no colon", "GET / HTTP/1.1\r\n" + hostX + "junk\r\n\r\n", 400, "invalid_field_name"},
	{"NUL in value", "GET / HTTP/1.1\r\n" + hostX + "X-A: a\x00b\r\n\r\n", 400, "invalid_field_value"},
	{"CR in value", "GET / HTTP/1.1\r\n" + hostX + "X-A: a\rb\r\n\r\n", 400, "invalid_field_value"},
	{"empty lines before request", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n" + hostX + "\r\n", 400, "leading_empty_lines"},
	// framing (request smuggling)
	{"CL and TE", "POST / HTTP/1.1\r\n" + hostX + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "content_length_and_transfer_encoding"},
	{"duplicate CL", "POST / HTTP/1.1\r\n" + hostX + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, "invalid_content_length"},
	{"CL sign", "POST / HTTP/1.1\r\n" + hostX + "Content-Length: +5\r\n\r\n", 400, "invalid_content_length"},
	{"TE obfuscated", "POST / HTTP/1.1\r\n" + hostX + "Transfer-Encoding: xchunked\r\n\r\n", 501, "invalid_transfer_encoding"},
	{"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "invalid_transfer_encoding"},
	{"unknown expect", "GET / HTTP/1.1\r\n" + hostX + "Expect: teapot\r\n\r\n", 417, "unsupported_expectation"},
	{"bad chunk size", "POST / HTTP/1.1\r\n" + hostX + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, "invalid_chunked_body"},
}
