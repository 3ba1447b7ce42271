package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, raw, method string
		status            int
		body              string
		close             bool
		trailer           string
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", "GET", 200, "hi", false, ""},
		{"chunked trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nGrpc-Status: 0\r\n\r\n", "GET", 200, "hi", false, "0"},
		{"until close", "HTTP/1.1 200 OK\r\n\r\nhello", "GET", 200, "hello", true, ""},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD", 200, "", false, ""},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", "GET", 204, "", false, ""},
		{"304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", "GET", 304, "", false, ""},
		{"1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", "GET", 200, "x", true, ""},
		{"bare LF tolerated", "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", "GET", 200, "x", false, ""},
		{"CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", "GET", 200, "x", true, ""},
		{"dup equal CL", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", "GET", 200, "x", false, ""},
		{"TE chunked any case", "HTTP/1.1 200 OK\r\nTransfer-Encoding:  Chunked \r\n\r\n1\r\nx\r\n0\r\n\r\n", "GET", 200, "x", false, ""},
		{"304 TE gzip, chunked", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "GET", 304, "", false, ""},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET", 200, "", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := NewReader(bufio.NewReader(strings.NewReader(tc.raw)), Limits{})
			var resp Response
			if err := r.ReadResponse(&resp, tc.method); err != nil {
				t.Fatal(err)
			}
			b := NewBody(r)
			b.ResetResponse(&resp)
			got, err := io.ReadAll(b)
			if err != nil || string(got) != tc.body || resp.Status != tc.status || resp.Close != tc.close {
				t.Fatalf("status %d body %q close %v err %v", resp.Status, got, resp.Close, err)
			}
			if tr := b.Trailer().Get("Grpc-Status"); tr != tc.trailer {
				t.Fatalf("trailer %q", tr)
			}
		})
	}
}

func TestReadResponseRefused(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/2 200\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
		"garbage\r\n\r\n",
		// Transfer codings other than chunked alone: the body would reach
		// the client still coded, the field naming the coding dropped.
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhi",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: x-foo\r\n\r\nhi",
		"\r\n\r\n\r\n\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", // more empty lines than tolerated
		// RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing,
		// with or without a Content-Length, whatever the status.
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nhi",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhi",
		"HTTP/1.0 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		r := NewReader(bufio.NewReader(strings.NewReader(raw)), Limits{})
		var resp Response
		err := r.ReadResponse(&resp, "GET")
		if err == nil || StatusOf(err) != 502 {
			t.Errorf("%q: %v, want status 502", raw, err)
		}
	}
}

// TestWrittenFieldsParseBack: every control byte a value may hold is
// blanked by the writer, so the package's own reader accepts what it wrote
// (FuzzChunkWriterRoundTrip found \x01 in a trailer breaking the body).
func TestWrittenFieldsParseBack(t *testing.T) {
	t.Parallel()
	for c := 0; c < 256; c++ {
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		v := "a" + string(rune(c)) + "b"
		if c >= 0x80 {
			v = "a" + string([]byte{byte(c)}) + "b" // obs-text, not UTF-8
		}
		WriteResponseHead(w, 1, 200, http.Header{"X-V": {v}, "Content-Length": {"0"}})
		w.Flush()
		var resp Response
		if err := NewReader(bufio.NewReader(&buf), Limits{}).ReadResponse(&resp, "GET"); err != nil {
			t.Fatalf("byte %#x: %v", c, err)
		}
	}
}

// TestTrailerFieldLimit: a trailer section holds at most MaxHeaders fields
// (it has no start line to allow for).
func TestTrailerFieldLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fields int
		ok     bool
	}{{2, true}, {3, false}} {
		raw := "1\r\nx\r\n0\r\n" + strings.Repeat("A: b\r\n", tc.fields) + "\r\n"
		b := NewBody(NewReader(bufio.NewReader(strings.NewReader(raw)), Limits{MaxHeaders: 2}))
		b.ResetResponse(&Response{Chunked: true, ContentLength: -1})
		if _, err := io.ReadAll(b); (err == nil) != tc.ok {
			t.Errorf("%d trailer fields, limit 2: err %v", tc.fields, err)
		}
	}
}

func TestWriters(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := WriteRequestHead(w, "POST", "/x", "h", http.Header{"X-A": {"a"}, "Host": {"ignored"}, "Transfer-Encoding": {"chunked"}}); err != nil {
		t.Fatal(err)
	}
	cw := ChunkWriter{W: w}
	cw.Write([]byte("hello"))
	cw.Write(nil)
	cw.Close(http.Header{"X-T": {"t"}})
	w.Flush()
	out := buf.String()
	if !strings.HasPrefix(out, "POST /x HTTP/1.1\r\nHost: h\r\n") || !strings.Contains(out, "X-A: a\r\n") ||
		strings.Count(out, "Host:") != 1 || !strings.HasSuffix(out, "\r\n\r\n5\r\nhello\r\n0\r\nX-T: t\r\n\r\n") {
		t.Fatalf("unexpected output %q", out)
	}
	r := NewReader(bufio.NewReader(&buf), Limits{})
	var req Request
	if err := r.ReadRequest(&req); err != nil {
		t.Fatal(err)
	}
	b := NewBody(r)
	b.ResetRequest(&req, 0)
	got, _ := io.ReadAll(b)
	if string(got) != "hello" || b.Trailer().Get("X-T") != "t" {
		t.Fatalf("round trip: %q %v", got, b.Trailer())
	}
}
