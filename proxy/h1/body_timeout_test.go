package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"testing"
)

// stallReader gives wire in two parts: up to cut, then a read timeout
// (os.ErrDeadlineExceeded, as a connection with a passed deadline), then
// the rest.
type stallReader struct {
	wire    string
	cut     int
	stalled bool
}

func (r *stallReader) Read(p []byte) (int, error) {
	if r.cut == 0 && !r.stalled {
		r.stalled = true
		return 0, os.ErrDeadlineExceeded
	}
	end := len(r.wire)
	if !r.stalled {
		end = r.cut
	}
	if end == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.wire[:end])
	r.wire, r.cut = r.wire[n:], r.cut-n
	return n, nil
}

// TestBodyResumesAfterTimeout: a read that times out anywhere in a body
// (mid data, in a chunk's CRLF or size line, the trailer section's first
// line) leaves it readable: reading
// on gives the whole body and its end, as if there had been no timeout.
// A proxy relies on it to wake a request body's reader when the upstream
// answered early, then drain the rest for keep-alive.
func TestBodyResumesAfterTimeout(t *testing.T) {
	for _, tc := range []struct {
		name, wire, want string
		req              Request
	}{
		{"length", "hello world", "hello world", Request{ContentLength: 11}},
		{"chunked", "5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n", "hello world", Request{Chunked: true}},
		{"chunked big size", "00b\r\nhello world\r\n000\r\n\r\n", "hello world", Request{Chunked: true}},
		{"chunked trailer", "b\r\nhello world\r\n0\r\nX-Sum: 1\r\n\r\n", "hello world", Request{Chunked: true}},
	} {
		end := len(tc.wire)
		if tc.name == "chunked trailer" {
			end -= len("\r\n") // a timeout after the first line is final
		}
		for cut := range end {
			src := &stallReader{wire: tc.wire, cut: cut}
			// A buffer smaller than a size line: the line is peeked
			// across fills.
			b := NewBody(NewReader(bufio.NewReaderSize(src, 16), Limits{}))
			b.ResetRequest(&tc.req, 0)
			var got []byte
			timeouts := 0
			for {
				p := make([]byte, 4)
				n, err := b.Read(p)
				got = append(got, p[:n]...)
				if errors.Is(err, io.EOF) {
					break
				}
				if errors.Is(err, os.ErrDeadlineExceeded) && timeouts == 0 {
					timeouts++
					continue
				}
				if err != nil {
					t.Fatalf("%s cut at %d: %v after %q", tc.name, cut, err, got)
				}
			}
			if string(got) != tc.want || !b.Done() {
				t.Fatalf("%s cut at %d: got %q done=%v, want %q", tc.name, cut, got, b.Done(), tc.want)
			}
		}
	}
}

// TestBodyTimeoutInTrailerStays: a trailer section is read line by line;
// a timeout inside it is final, not resumed with a line lost.
func TestBodyTimeoutInTrailerStays(t *testing.T) {
	wire := "5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n"
	src := &stallReader{wire: wire, cut: len("5\r\nhello\r\n0\r\nX-Sum: 1\r\n")}
	b := NewBody(NewReader(bufio.NewReaderSize(src, 16), Limits{}))
	b.ResetRequest(&Request{Chunked: true}, 0)
	_, err := io.ReadAll(b)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want the timeout", err)
	}
	if _, err := b.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) || b.Done() || b.Trailer().Get("X-B") != "" {
		t.Fatalf("read on after a timeout in the trailer: %v done=%v %v", err, b.Done(), http.Header(b.Trailer()))
	}
}

// FuzzBodyResumes: a chunked body read with a timeout at any point, and
// read on after it, decodes as it does without the timeout; only a
// timeout inside the trailer section (after its first line) is final.
func FuzzBodyResumes(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n"), uint16(12), true)
	f.Add([]byte("5\nhello\n0\n\n"), uint16(3), false)
	f.Fuzz(func(t *testing.T, raw []byte, cut uint16, strict bool) {
		read := func(src io.Reader) (*Body, []byte, error) {
			b := NewBody(NewReader(bufio.NewReaderSize(src, 16), Limits{MaxHeaderBytes: 512, MaxHeaders: 8}))
			if strict {
				b.ResetRequest(&Request{Chunked: true, ContentLength: -1}, 0)
			} else {
				b.ResetResponse(&Response{Chunked: true, ContentLength: -1})
			}
			var got []byte
			p := make([]byte, 5)
			timeouts := 0
			for {
				n, err := b.Read(p)
				got = append(got, p[:n]...)
				if errors.Is(err, os.ErrDeadlineExceeded) && timeouts == 0 {
					timeouts++
					continue
				}
				if err != nil {
					return b, got, err
				}
			}
		}
		_, want, werr := read(bytes.NewReader(raw))
		b, got, err := read(&stallReader{wire: string(raw), cut: int(cut) % (len(raw) + 1)})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if !b.last {
				t.Fatalf("a timeout outside the trailer section was final, after %q", got)
			}
			return
		}
		if !bytes.Equal(got, want) || errors.Is(err, io.EOF) != errors.Is(werr, io.EOF) {
			t.Fatalf("with a timeout: %q %v; without: %q %v", got, err, want, werr)
		}
	})
}
