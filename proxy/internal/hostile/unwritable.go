package hostile

import "net/http"

// Spoil is a change a phase hook (UpstreamRequestFilter) makes to the
// upstream request that no upstream writer may serialize: Part is
// "method", "uri", "host", "name" (a field added under Value, valued "v")
// or "value" (X-Spoiled set to Value).
type Spoil struct {
	Name, Part, Value string
}

// Apply makes the change to a request head.
func (s Spoil) Apply(method, uri, host *string, h http.Header) {
	switch s.Part {
	case "method":
		*method = s.Value
	case "uri":
		*uri = s.Value
	case "host":
		*host = s.Value
	case "name":
		h[s.Value] = []string{"v"}
	case "value":
		h["X-Spoiled"] = []string{s.Value}
	}
}

// Unwritable lists the spoiled requests: CR, LF, a space and other bytes
// that would split the request line or a field, or make the upstream read
// another target or host than the one routed. Every one must fail the
// request with 500 and send the upstream nothing.
var Unwritable = []Spoil{
	{"method CRLF", "method", "GET / HTTP/1.1\r\nHost: evil\r\n\r\nGET"},
	{"method space", "method", "GET /admin"},
	{"method empty", "method", ""},
	{"method NUL", "method", "GET\x00"},
	{"method tab", "method", "G\tET"},
	{"uri CRLF", "uri", "/a HTTP/1.1\r\nHost: evil\r\n\r\nGET /b"},
	{"uri space", "uri", "/a b"},
	{"uri tab", "uri", "/a\tb"},
	{"uri LF", "uri", "/a\nb"},
	{"uri NUL", "uri", "/a\x00"},
	{"uri fragment", "uri", "/a#b"},
	{"uri relative", "uri", "a/b"},
	{"uri absolute-form", "uri", "http://evil.test/"},
	{"uri empty", "uri", ""},
	{"host CRLF", "host", "proxy.test\r\nX-Injected: 1"},
	{"host space", "host", "proxy.test evil.test"},
	{"host userinfo", "host", "user@evil.test"},
	{"host path", "host", "proxy.test/evil"},
	{"host bad port", "host", "proxy.test:8x"},
	{"name CRLF", "name", "X-A\r\nX-Injected"},
	{"name space", "name", "X Spoiled"},
	{"name colon", "name", "X-A:"},
	{"name empty", "name", ""},
	{"name non-ASCII", "name", "X-\xc3\xa9"},
	{"name second Host", "name", "host"},
	{"name second Content-Length", "name", "content-length"},
	{"name second Transfer-Encoding", "name", "transfer-encoding"},
	{"value CRLF", "value", "v\r\nX-Injected: 1"},
	{"value LF", "value", "v\nX-Injected: 1"},
	{"value CR", "value", "v\rX"},
	{"value NUL", "value", "v\x00"},
	{"value DEL", "value", "v\x7f"},
	{"value leading space", "value", " v"},
	{"value trailing space", "value", "v "},
	{"value trailing tab", "value", "v\t"},
}
