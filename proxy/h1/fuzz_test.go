package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"reflect"
	"strings"
	"testing"
)

// Seeds for the targets below live in testdata/fuzz/<target>; go test runs
// them as regression tests, go test -fuzz starts from them (issue 11 item 5).

// FuzzReadResponse feeds arbitrary bytes to the response parser as an
// upstream would send them, for a GET or a HEAD. A refused head is a
// *ParseError with status 502 (or io.EOF / ErrUnexpectedEOF for a short
// read); an accepted head has one unambiguous framing and survives being
// written by WriteResponseHead and read again; a body never yields more
// bytes than were sent.
func FuzzReadResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		r := NewReader(bufio.NewReaderSize(strings.NewReader(raw), 64), Limits{MaxHeaderBytes: 4096})
		b := NewBody(r)
		var resp Response
		p := make([]byte, 7)
		total := 0
		for range 3 { // a keep-alive connection: several responses in a row
			if err := r.ReadResponse(&resp, method); err != nil {
				checkResponseError(t, err)
				return
			}
			checkResponse(t, &resp, method)
			checkResponseRoundTrip(t, &resp, method)
			b.ResetResponse(&resp)
			n, err := drain(b, p)
			if total += n; total > len(raw) {
				t.Fatalf("bodies returned %d bytes from %d sent", total, len(raw))
			}
			if err != nil || resp.Close {
				return
			}
		}
	})
}

func checkResponseError(t *testing.T, err error) {
	t.Helper()
	var pe *ParseError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, ErrUnexpectedEOF):
	case errors.As(err, &pe) && pe.Status == 502:
	default:
		t.Fatalf("refused with %v, want a 502 ParseError", err)
	}
}

// checkResponse asserts what the proxy relies on in an accepted head.
func checkResponse(t *testing.T, resp *Response, method string) {
	t.Helper()
	h := resp.Header
	switch {
	case resp.Status < 100 || resp.Status > 999 || resp.Major != 1 || resp.Minor > 1:
		t.Fatalf("accepted status %d version %d.%d", resp.Status, resp.Major, resp.Minor)
	case resp.Chunked && (resp.ContentLength != -1 || resp.Minor != 1):
		t.Fatalf("chunked with length %d in 1.%d", resp.ContentLength, resp.Minor)
	case len(h["Transfer-Encoding"]) > 0 && len(h["Content-Length"]) > 0:
		t.Fatal("Content-Length kept beside Transfer-Encoding")
	case len(h["Content-Length"]) > 1:
		t.Fatalf("%d Content-Length values kept", len(h["Content-Length"]))
	case strings.ContainsAny(resp.Reason, "\r\n\x00"):
		t.Fatalf("reason %q", resp.Reason)
	case resp.NoBody != (method == "HEAD" || resp.Status < 200 || resp.Status == 204 || resp.Status == 304):
		t.Fatalf("NoBody %v for %s %d", resp.NoBody, method, resp.Status)
	case !resp.Chunked && resp.ContentLength < 0 && !resp.NoBody && !resp.Close:
		t.Fatal("a body delimited by close on a connection kept open")
	}
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, ok := parseContentLength(cl[0]); !ok || n != resp.ContentLength {
			t.Fatalf("Content-Length %q but ContentLength %d", cl[0], resp.ContentLength)
		}
	}
	for k, vs := range h {
		for _, v := range vs {
			if !isToken(k) || strings.ContainsAny(v, "\r\n\x00") || strings.TrimSpace(v) != v {
				t.Fatalf("field %q: %q", k, v)
			}
		}
	}
}

// checkResponseRoundTrip writes the head as the proxy writes a response
// downstream and reads it back: status, version, fields and framing agree.
func checkResponseRoundTrip(t *testing.T, resp *Response, method string) {
	t.Helper()
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	WriteResponseHead(w, resp.Minor, resp.Status, resp.Header)
	w.Flush()
	var again Response
	if err := NewReader(bufio.NewReader(&buf), Limits{}).ReadResponse(&again, method); err != nil {
		t.Fatalf("written head %q does not parse: %v", buf.String(), err)
	}
	if again.Status != resp.Status || again.Minor != resp.Minor || again.Chunked != resp.Chunked ||
		again.ContentLength != resp.ContentLength || again.NoBody != resp.NoBody ||
		!reflect.DeepEqual(again.Header, resp.Header) {
		t.Fatalf("round trip of %+v gave %+v", resp, again)
	}
}

// drain reads b to its end with a small buffer, and returns the bytes read
// and the error that ended it (nil at the body's end).
func drain(b *Body, p []byte) (int, error) {
	total := 0
	for {
		n, err := b.Read(p)
		if n < 0 || n > len(p) {
			panic("Read returned an impossible count")
		}
		total += n
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// FuzzChunkedBody feeds arbitrary bytes to the chunked body reader, as a
// request body (strict) or a response body. It never panics, never returns
// more bytes than were sent, keeps its buffers within the head limits, never
// reads the network when Buffered promised data, and a body it accepts
// decodes to the same bytes as net/http/httputil's chunked reader.
func FuzzChunkedBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte, strict bool) {
		src := &watchReader{r: bytes.NewReader(raw)}
		lim := Limits{MaxHeaderBytes: 512, MaxHeaders: 8}
		r := NewReader(bufio.NewReaderSize(src, 16), lim)
		b := NewBody(r)
		if strict {
			b.ResetRequest(&Request{Chunked: true, ContentLength: -1}, 0)
		} else {
			b.ResetResponse(&Response{Chunked: true, ContentLength: -1})
		}
		var got []byte
		p := make([]byte, 5)
		var err error
		for err == nil {
			src.promised = b.Buffered() > 0
			var n int
			n, err = b.Read(p)
			if src.broken {
				t.Fatal("Buffered promised data, then Read waited for the network")
			}
			got = append(got, p[:n]...)
		}
		if len(got) > len(raw) {
			t.Fatalf("read %d bytes from %d sent", len(got), len(raw))
		}
		if c := cap(r.head); c > 2*(lim.MaxHeaderBytes+16) { // append may double it
			t.Fatalf("trailer buffer grew to %d bytes", c)
		}
		if len(b.Trailer()) > lim.MaxHeaders {
			t.Fatalf("%d trailer fields kept", len(b.Trailer()))
		}
		if !errors.Is(err, io.EOF) {
			return
		}
		want, werr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(raw)))
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("decoded %q, net/http decodes %q", got, want)
		}
	})
}

// watchReader notes a Read while promised is set: the reader would have
// blocked although Buffered said body bytes were ready.
type watchReader struct {
	r        io.Reader
	promised bool
	broken   bool
}

func (w *watchReader) Read(p []byte) (int, error) {
	if w.promised {
		w.broken = true
	}
	return w.r.Read(p)
}

// FuzzChunkWriterRoundTrip writes data as chunks cut at the lengths in cuts
// (0: an empty write, which must write nothing) with trailer fields parsed
// from trailer ("name: value" lines), then reads the body back in both
// modes: the same bytes, and every trailer field the writer kept.
func FuzzChunkWriterRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, data, cuts []byte, trailer string) {
		tr := fuzzTrailer(trailer)
		var buf bytes.Buffer
		w := bufio.NewWriterSize(&buf, 16)
		cw := ChunkWriter{W: w}
		rest := data
		for _, c := range cuts {
			n := min(int(c), len(rest))
			if m, err := cw.Write(rest[:n]); m != n || err != nil {
				t.Fatalf("Write(%d bytes) = %d, %v", n, m, err)
			}
			rest = rest[n:]
		}
		cw.Write(rest)
		if err := cw.Close(tr); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		for _, strict := range []bool{true, false} {
			r := NewReader(bufio.NewReaderSize(bytes.NewReader(buf.Bytes()), 16), Limits{})
			b := NewBody(r)
			if strict {
				b.ResetRequest(&Request{Chunked: true, ContentLength: -1}, 0)
			} else {
				b.ResetResponse(&Response{Chunked: true, ContentLength: -1})
			}
			got, err := io.ReadAll(b)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("strict %v: read %q, %v from %q", strict, got, err, buf.Bytes())
			}
			if want := keptTrailer(tr); !reflect.DeepEqual(b.Trailer(), want) && len(want)+len(b.Trailer()) > 0 {
				t.Fatalf("strict %v: trailer %q, want %q", strict, b.Trailer(), want)
			}
		}
	})
}

// fuzzTrailer makes up to 8 trailer fields from "name: value" lines.
func fuzzTrailer(s string) http.Header {
	h := http.Header{}
	for i, line := range strings.Split(s, "\n") {
		if i == 8 {
			break
		}
		name, value, _ := strings.Cut(line, ":")
		h.Add(name, value)
	}
	return h
}

// keptTrailer is what the reader must see of tr: fields with a token name,
// their values with controls blanked and optional whitespace trimmed.
func keptTrailer(tr http.Header) http.Header {
	out := http.Header{}
	for k, vs := range tr {
		if !isToken(k) {
			continue
		}
		for _, v := range vs {
			b := []byte(v)
			for i, c := range b {
				if isCTL(c) {
					b[i] = ' '
				}
			}
			out[k] = append(out[k], strings.Trim(string(b), " \t"))
		}
	}
	return out
}
