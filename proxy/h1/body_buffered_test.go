package h1

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// TestBodyBuffered: framing bytes without data do not count, so a proxy
// flushes a streamed chunk instead of waiting for the next one.
func TestBodyBuffered(t *testing.T) {
	for _, tc := range []struct {
		name, wire string
		read       int // bytes read before asking
		want       bool
	}{
		{"nothing read yet", "6\r\nfirst\n\r\n", 0, false}, // the connection was not read: nothing buffered
		{"after chunk, CRLF only", "6\r\nfirst\n\r\n", 6, false},
		{"after chunk, partial size line", "6\r\nfirst\n\r\n5", 6, false},
		{"after chunk, next chunk ready", "6\r\nfirst\n\r\n5\r\nlast\n", 6, true},
		{"after chunk, last chunk", "6\r\nfirst\n\r\n0\r\n\r\n", 6, false},
		// The last chunk with more zeros, an extension, or BWS, and the first
		// byte of its trailer (FuzzChunkedBody): Read would wait for the rest.
		{"after chunk, last chunk 00", "6\r\nfirst\n\r\n00\r\nX", 6, false},
		{"after chunk, last chunk 000;ext", "6\r\nfirst\n\r\n000;x=y\r\nX", 6, false},
		{"after chunk, last chunk BWS", "6\r\nfirst\n\r\n0 ;x\r\nX", 6, false},
		{"after chunk, chunk 10", "6\r\nfirst\n\r\n010\r\n0123456789", 6, true},
		{"mid chunk", "6\r\nfirst\n\r\n", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := chunkedBodyAfter(t, tc.wire, tc.read)
			if got := b.Buffered() > 0; got != tc.want {
				t.Fatalf("Buffered() = %d, want > 0: %v", b.Buffered(), tc.want)
			}
		})
	}
}

// TestBodyEndBuffered: the end of a chunked body counts as buffered only
// when the last chunk and the whole trailer section are, so reading to
// EOF then never waits.
func TestBodyEndBuffered(t *testing.T) {
	for _, tc := range []struct {
		name, wire string
		read       int
		want       bool
	}{
		{"nothing read yet", "6\r\nfirst\n\r\n0\r\n\r\n", 0, false},
		{"mid chunk", "6\r\nfirst\n\r\n0\r\n\r\n", 3, false},
		{"after chunk, CRLF only", "6\r\nfirst\n\r\n", 6, false},
		{"after chunk, next chunk", "6\r\nfirst\n\r\n5\r\nlast\n\r\n0\r\n\r\n", 6, false},
		{"after chunk, last chunk, no empty line", "6\r\nfirst\n\r\n0\r\n", 6, false},
		{"after chunk, last chunk, end", "6\r\nfirst\n\r\n0\r\n\r\n", 6, true},
		{"after chunk, last chunk 000;ext, end", "6\r\nfirst\n\r\n000;x=y\r\n\r\n", 6, true},
		{"bare LF end", "6\r\nfirst\n\r\n0\n\n", 6, true},
		{"trailer, not ended", "6\r\nfirst\n\r\n0\r\nX-Sum: 1\r\n", 6, false},
		{"trailer, ended", "6\r\nfirst\n\r\n0\r\nX-Sum: 1\r\n\r\n", 6, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := chunkedBodyAfter(t, tc.wire, tc.read)
			if got := b.EndBuffered(); got != tc.want {
				t.Fatalf("EndBuffered() = %v, want %v", got, tc.want)
			}
			if tc.want {
				if n, err := b.Read(make([]byte, 16)); n != 0 || err != io.EOF {
					t.Fatalf("Read after EndBuffered = %d, %v; want 0, EOF", n, err)
				}
			}
		})
	}
}

// chunkedBodyAfter returns a chunked response body over wire with its
// first read bytes read.
func chunkedBodyAfter(t *testing.T, wire string, read int) *Body {
	t.Helper()
	b := NewBody(NewReader(bufio.NewReader(strings.NewReader(wire)), Limits{}))
	b.ResetResponse(&Response{Status: 200, Chunked: true})
	if read > 0 {
		if _, err := io.ReadFull(b, make([]byte, read)); err != nil {
			t.Fatal(err)
		}
	}
	return b
}
