package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/proxy/internal/hostile"
)

func TestValidAuthority(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"proxy.test", true}, {"proxy.test:8443", true}, {"127.0.0.1", true}, {"127.0.0.1:80", true},
		{"[::1]", true}, {"[::1]:443", true}, {"[fe80::1%25eth0]:80", true}, {"a_b-c~d", true}, {"xn--caf-dma.test", true},
		{"PROXY.TEST", true}, {"a,b", true}, {"proxy.test:65535", true},
		{"", false}, {"user@proxy.test", false}, {"u:p@proxy.test", false}, {"proxy.test evil", false}, {"proxy.test\t", false},
		{"proxy.test/x", false}, {"proxy.test?x", false}, {"proxy.test#x", false}, {"proxy.test:", false}, {"proxy.test:8x", false},
		{"proxy.test:123456", false}, {"proxy.test:99999", false}, {"proxy.test:65536", false}, {"[::1]:70000", false}, {"proxy.test:080", true}, {"proxy.test:80:81", false}, {":80", false}, {"[::1", false}, {"[]", false},
		{"[::1]x", false}, {"[::1]:", false}, {"::1", false}, {"pr\xc3\xb6xy.test", false}, {"a\r\nb", false}, {"a\x00", false},
	} {
		if got := ValidAuthority(tc.in); got != tc.ok {
			t.Errorf("ValidAuthority(%q) = %v, want %v", tc.in, got, tc.ok)
		}
	}
}

func TestValidTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		method, target string
		ok             bool
	}{
		{"GET", "/", true}, {"GET", "/a?b=c&d", true}, {"GET", "//x", true}, {"GET", "/caf\xc3\xa9", true}, {"GET", "/a%20b", true},
		{"OPTIONS", "*", true}, {"CONNECT", "proxy.test:443", true}, {"CONNECT", "[::1]:443", true},
		{"GET", "", false}, {"GET", "*", false}, {"GET", "a", false}, {"GET", "http://x/", false}, {"GET", "/a b", false},
		{"GET", "/a\tb", false}, {"GET", "/a#b", false}, {"GET", "/a\x00", false}, {"GET", "/a\x7f", false}, {"GET", "/a\r\n", false},
		{"CONNECT", "proxy.test", false}, {"CONNECT", "/", false}, {"CONNECT", "u@proxy.test:443", false}, {"CONNECT", "[::1]", false},
		// A path parameter that holds an encoded slash: Tomcat reads
		// "/static/x", Go and nginx "/account" (ParamHidesSlash).
		{"GET", "/static/x;%2F..%2Faccount", false}, {"GET", "/a;v=%2f", false}, {"GET", "/a;b/c;d%2Fe", false},
		{"GET", "/a;v=1/b", true}, {"GET", "/a%2Fb;v=1", true}, {"GET", "/a;v=1/%2F", true}, {"GET", "/a;v?x=%2F", true},
		{"GET", "/a?x=;%2F", true}, {"GET", "/a;%2", true}, {"GET", "/a%3B%2F", true},
		// A dot segment with a parameter: Tomcat reads "/public/x", Go
		// and nginx a path under "/private/" (ParamOnDotSegment).
		{"GET", "/private/..;/public/x", false}, {"GET", "/x/.;/y", false}, {"GET", "/x/%2e%2E;v=1/y", false},
		{"GET", "/x/.%2e;", false}, {"GET", "/..;", false}, {"GET", "/a;b/..;/c", false},
		{"GET", "/x/...;/y", true}, {"GET", "/x/a..;/y", true}, {"GET", "/x/..a;/y", true}, {"GET", "/x/;/..", true},
		{"GET", "/x/..?a=..;", true}, {"GET", "/a;b/c;d", true}, {"GET", "/x/%2e%2e%2e;", true}, {"GET", "/x/%2;", true},
		// An encoded slash that bounds a dot segment: Go and nginx read
		// "/public/x", Express a path under "/private/" (SlashHidesDotSegment).
		{"GET", "/private/..%2Fpublic/x", false}, {"GET", "/a%2f..", false}, {"GET", "/a%2F.", false}, {"GET", "/..%2Fa", false},
		{"GET", "/a/%2e%2E%2Fb", false}, {"GET", "/a%2F%2e/b", false},
		{"GET", "/a%2F...%2Fb", true}, {"GET", "/a%2F..x", true}, {"GET", "/a/../b%2Fc", true}, {"GET", "/a%2Fb?x=..%2F", true},
		{"GET", "/a%2%2F.x", true}, {"GET", "/a%2F", true}, {"GET", "/%2F%2F", true},
		// Both: Go reads "/private/..;x/public/y", a path under "/private/";
		// route.MatchPath "/public/y".
		{"GET", "/private%2F..;x/public/y", false}, {"GET", "/private%2f%2e.;/public/y", false}, {"GET", "/a%2Fb..;/c", true},
		// A backslash, raw or encoded, is a slash to IIS: where it bounds
		// a dot segment IIS serves "/private/x", Go, nginx and Express a
		// page under "/public/"; in a parameter it hides a slash from
		// Tomcat, as "%2F" does.
		{"GET", `/public/..\private/x`, false}, {"GET", "/public/..%5Cprivate/x", false}, {"GET", "/public/..%5cprivate/x", false},
		{"GET", `/a\.`, false}, {"GET", `/..\a`, false}, {"GET", `/a%5C%2e%2E/b`, false}, {"GET", `/private\..;/public/y`, false},
		{"GET", `/static/x;\..\account`, false}, {"GET", "/static/x;%5c", false},
		{"GET", `/a\b`, true}, {"GET", "/a%5Cb", true}, {"GET", `/a\...\b`, true}, {"GET", `/a\..x`, true}, {"GET", `/a?x=..\`, true},
		{"GET", "/a%5%5C.x", true},
		// IIS's HTTP.sys decodes %uNNNN by default: a dot or slash so
		// spelt is one to IIS and to no one else (PercentUHidesPathChar).
		{"GET", "/public/%u002e%u002e/private/x", false}, {"GET", "/api%u002flogin", false}, {"GET", "/a%U005Cb", false},
		{"GET", "/x/%u002E", false}, {"GET", "/a%u002F", false}, {"GET", "/a/.%u002e/b", false}, {"GET", "/a%%u002f", false},
		{"GET", "/a%u0041", true}, {"GET", "/a?x=%u002e", true}, {"GET", "/a%u002", true}, {"GET", "/%u", true},
		{"GET", "/a%u012e", true}, {"GET", "/a%u002g", true}, {"GET", "/a%25u002e", true},
	} {
		if got := ValidTarget(tc.method, tc.target); got != tc.ok {
			t.Errorf("ValidTarget(%q, %q) = %v, want %v", tc.method, tc.target, got, tc.ok)
		}
	}
}

func TestValidFieldValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"", true}, {"v", true}, {"a b\tc", true}, {"caf\xc3\xa9", true}, {"\"quoted\"", true},
		{" v", false}, {"v ", false}, {"\tv", false}, {"v\t", false}, {" ", false}, {"a\r\nb", false}, {"a\nb", false},
		{"a\rb", false}, {"a\x00b", false}, {"a\x7f", false}, {"a\x0b", false},
	} {
		if got := ValidFieldValue(tc.in); got != tc.ok {
			t.Errorf("ValidFieldValue(%q) = %v, want %v", tc.in, got, tc.ok)
		}
	}
}

// TestMalformedRequestCodes: each malformed head of the shared list is
// refused with its status and code (the proxy's counter label).
func TestMalformedRequestCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range hostile.H1Malformed {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			req, r, err := readReq(t, tc.Raw)
			if err == nil { // the body carries the malformation
				b := NewBody(r)
				b.ResetRequest(req, 0)
				_, err = io.ReadAll(b)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err %v, want a ParseError", err)
			}
			if pe.Status != tc.Status || pe.Code != tc.Reason {
				t.Fatalf("status %d code %q, want %d %q (%v)", pe.Status, pe.Code, tc.Status, tc.Reason, err)
			}
		})
	}
}

// TestWriteRequestHeadRefuses: every spoiled head is refused with
// ErrUnwritable and not one byte reaches the writer.
func TestWriteRequestHeadRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range hostile.Unwritable {
		t.Run(tc.Name, func(t *testing.T) {
			method, uri, host := "GET", "/", "proxy.test"
			h := http.Header{"X-Ok": {"1"}}
			tc.Apply(&method, &uri, &host, h)
			var buf bytes.Buffer
			w := bufio.NewWriterSize(&buf, 16) // small: a partial write would reach buf
			err := WriteRequestHead(w, method, uri, host, h)
			w.Flush()
			if !errors.Is(err, ErrUnwritable) || buf.Len() != 0 {
				t.Fatalf("err %v, wrote %q", err, buf.String())
			}
		})
	}
}

// TestWriteRoundTrip: a head the parser accepted, written again as the
// proxy forwards it, parses back to the same method, target, host and
// fields.
func TestWriteRoundTrip(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: proxy.test:8080\r\nX-A: 1\r\nx-a:  2 \r\nCookie: a=1; b=2\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
		"CONNECT proxy.test:443 HTTP/1.1\r\nHost: proxy.test:443\r\n\r\n",
		"GET http://proxy.test/p?q HTTP/1.1\r\nHost: other.test\r\n\r\n",
		"GET /caf\xc3\xa9 HTTP/1.0\r\nX-Tab: a\tb\r\n\r\n",
	} {
		req, _, err := readReq(t, raw)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		target := req.Target
		if strings.HasPrefix(target, "http://") { // the proxy forwards origin-form
			target = req.Path + "?" + req.RawQuery
		}
		h := req.Header.Clone()
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if err := WriteRequestHead(w, req.Method, target, req.Host, h); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		w.Flush()
		back, _, err := readReq(t, buf.String())
		if err != nil {
			t.Fatalf("%q written as %q: %v", raw, buf.String(), err)
		}
		delete(back.Header, "Host")
		delete(h, "Host")
		if back.Method != req.Method || back.Target != target || back.Host != req.Host || !sameHeader(back.Header, h) {
			t.Fatalf("%q came back as %+v", raw, back)
		}
	}
}

func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

func BenchmarkWriteRequestHead(b *testing.B) {
	h := http.Header{"User-Agent": {"bench/1.0"}, "Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "X-Request-Id": {"1234567890"},
		"X-Forwarded-For": {"203.0.113.9, 127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"example.com"}}
	w := bufio.NewWriterSize(io.Discard, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteRequestHead(w, "GET", "/index.html?x=1", "example.com", h); err != nil {
			b.Fatal(err)
		}
		w.Flush()
	}
}
