package h2

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// blockWriter writes header blocks as a client does: one HPACK encoder for
// the connection, whose dynamic table the server's decoder must follow,
// and each block cut into fragments of at most frag bytes (HEADERS, then
// CONTINUATION frames).
type blockWriter struct {
	fr   *http2.Framer
	buf  bytes.Buffer
	enc  *hpack.Encoder
	frag int
}

func newBlockWriter(fr *http2.Framer, frag int) *blockWriter {
	w := &blockWriter{fr: fr, frag: frag}
	w.enc = hpack.NewEncoder(&w.buf)
	return w
}

// encode returns the block of fields (name, value pairs), every field
// indexed in the dynamic table.
func (w *blockWriter) encode(fields ...string) []byte {
	w.buf.Reset()
	for i := 0; i < len(fields); i += 2 {
		w.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(w.buf.Bytes())
}

// write sends block on stream id in fragments; it returns how many frames
// it took.
func (w *blockWriter) write(t *testing.T, id uint32, endStream bool, block []byte) int {
	t.Helper()
	frames := 0
	for first := true; first || len(block) > 0; first = false {
		n := min(len(block), w.frag)
		p := block[:n]
		block = block[n:]
		var err error
		if first {
			err = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p, EndStream: endStream, EndHeaders: len(block) == 0})
		} else {
			err = w.fr.WriteContinuation(id, len(block) == 0, p)
		}
		if err != nil {
			t.Fatal(err)
		}
		frames++
	}
	return frames
}

// readUntil reads frames until done returns true for one; a GOAWAY fails
// the test.
func readUntil(t *testing.T, fr *http2.Framer, done func(http2.Frame) bool) {
	t.Helper()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatalf("GOAWAY %v %q: the connection ended", ga.ErrCode, ga.DebugData())
		}
		if done(f) {
			return
		}
	}
}

// TestOversizedHeaderBlockRefusesOnlyItsStream: a request whose header
// block is over MaxHeaderListSize and spans frames past the point where
// it went over (a gRPC call with too much metadata, in 16 KiB frames) is
// answered 431 and the connection goes on: a stream open before it
// finishes, and a later request whose block refers to dynamic table
// entries that only the refused block added decodes to the right fields.
// Before, the first CONTINUATION frame after the limit ended the
// connection with GOAWAY PROTOCOL_ERROR, and every stream on it.
func TestOversizedHeaderBlockRefusesOnlyItsStream(t *testing.T) {
	s := serve(t, Config{MaxHeaderListSize: 1024}, func(st *Stream) {
		body, err := io.ReadAll(st)
		if err != nil {
			st.Reset()
			return
		}
		st.WriteHead(200, http.Header{"X-Late": st.Header["X-Late"], "X-Body": {string(body)}})
		st.Finish(nil)
	})
	fr, _ := rawConn(t, s.addr)
	w := newBlockWriter(fr, 300)
	base := []string{":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a"}

	// Stream 1 is open, its body to come.
	w.write(t, 1, false, w.encode(base...))
	// Stream 3: 10 fields of 200 bytes, 2.3 KB over a limit of 1 KiB, in
	// frames of 300 bytes; the last field goes into the dynamic table
	// long after the limit was passed.
	big := append([]string{}, base...)
	for i := range 10 {
		big = append(big, fmt.Sprintf("x-f%d", i), strings.Repeat("b", 200))
	}
	big = append(big, "x-late", "from-the-refused-block")
	if n := w.write(t, 3, true, w.encode(big...)); n < 5 {
		t.Fatalf("the block took %d frames; the test needs several after the limit", n)
	}
	// The request after it refers to that field by its index alone.
	block := w.encode(append(base, "x-late", "from-the-refused-block")...)
	if bytes.Contains(block, []byte("from-the-refused-block")) {
		t.Fatal("the encoder sent the value again rather than its index")
	}
	w.write(t, 5, true, block)
	fr.WriteData(1, true, []byte("body-1"))

	statuses := map[uint32]string{}
	late := map[uint32]map[string]string{}
	readUntil(t, fr, func(f http2.Frame) bool {
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			statuses[h.StreamID] = h.PseudoValue("status")
			late[h.StreamID] = map[string]string{}
			for _, hf := range h.RegularFields() {
				late[h.StreamID][hf.Name] = hf.Value
			}
		}
		return len(statuses) == 3
	})
	if statuses[1] != "200" || statuses[3] != "431" || statuses[5] != "200" {
		t.Fatalf("statuses %v, want 200, 431, 200", statuses)
	}
	if late[1]["x-body"] != "body-1" {
		t.Errorf("stream 1 answered %v: its body did not arrive whole", late[1])
	}
	if late[5]["x-late"] != "from-the-refused-block" {
		t.Errorf("stream 5 answered %v: the dynamic table fell out of step", late[5])
	}
}

// TestOversizedGRPCHeaderBlock: a gRPC call over the limit gets a
// trailers-only response with grpc-status RESOURCE_EXHAUSTED, which gRPC
// clients read as such (431 they read as UNKNOWN or INTERNAL), and a gRPC
// call on the same connection goes on.
func TestOversizedGRPCHeaderBlock(t *testing.T) {
	s := serve(t, Config{MaxHeaderListSize: 1024}, func(st *Stream) {
		io.Copy(io.Discard, st)
		st.WriteHead(200, http.Header{"Content-Type": {"application/grpc"}})
		st.Finish(http.Header{"Grpc-Status": {"0"}})
	})
	fr, _ := rawConn(t, s.addr)
	w := newBlockWriter(fr, 256)
	base := []string{":method", "POST", ":scheme", "http", ":path", "/pkg.Svc/M", ":authority", "a",
		"content-type", "application/grpc+proto", "te", "trailers"}
	big := append([]string{}, base...)
	for i := range 8 {
		big = append(big, fmt.Sprintf("x-md%d", i), strings.Repeat("m", 300))
	}
	w.write(t, 1, false, w.encode(big...))
	w.write(t, 3, false, w.encode(base...))
	fr.WriteData(3, true, []byte{0, 0, 0, 0, 0})
	got := map[uint32][]hpack.HeaderField{}
	ended := map[uint32]bool{}
	readUntil(t, fr, func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			got[f.StreamID] = append(got[f.StreamID], f.Fields...)
			ended[f.StreamID] = f.StreamEnded()
		case *http2.DataFrame:
			ended[f.StreamID] = f.StreamEnded()
		}
		return ended[1] && ended[3]
	})
	want := map[string]string{":status": "200", "content-type": "application/grpc", "grpc-status": "8"}
	for _, hf := range got[1] {
		if v, ok := want[hf.Name]; ok && v == hf.Value {
			delete(want, hf.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("stream 1 answered %v: missing %v", got[1], want)
	}
	if len(got[3]) == 0 || got[3][0].Value != "200" {
		t.Errorf("stream 3 answered %v", got[3])
	}
}

// TestInvalidFieldInLongBlock: an invalid field early in a block of
// several frames resets that stream with PROTOCOL_ERROR; the block is
// still decoded, and the next request, which refers to its entries,
// is served. Before, the frame after the invalid field ended the
// connection.
func TestInvalidFieldInLongBlock(t *testing.T) {
	s := serve(t, Config{}, func(st *Stream) {
		st.WriteHead(200, http.Header{"X-Late": st.Header["X-Late"]})
		st.Finish(nil)
	})
	fr, _ := rawConn(t, s.addr)
	w := newBlockWriter(fr, 100)
	base := []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"}
	bad := append(append([]string{}, base...), "x-bad", "a\x00b")
	for i := range 5 {
		bad = append(bad, fmt.Sprintf("x-f%d", i), strings.Repeat("v", 100))
	}
	bad = append(bad, "x-late", "indexed-after-the-bad-field")
	w.write(t, 1, true, w.encode(bad...))
	w.write(t, 3, true, w.encode(append(base, "x-late", "indexed-after-the-bad-field")...))
	var rst http2.ErrCode = 100
	var late string
	readUntil(t, fr, func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				rst = f.ErrCode
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 3 {
				late = fmt.Sprint(f.RegularFields())
				return true
			}
		}
		return false
	})
	if rst != http2.ErrCodeProtocol {
		t.Errorf("stream 1: RST_STREAM %v, want PROTOCOL_ERROR", rst)
	}
	if !strings.Contains(late, "indexed-after-the-bad-field") {
		t.Errorf("stream 3 answered %s: the dynamic table fell out of step", late)
	}
}

// TestOversizedTrailersReset: request trailers over MaxHeaderListSize reset
// the stream (the request already runs: too late for 431) rather than
// reach the handler cut short; the connection goes on.
func TestOversizedTrailersReset(t *testing.T) {
	var trailers atomic.Value
	s := serve(t, Config{MaxHeaderListSize: 1024}, func(st *Stream) {
		if _, err := io.ReadAll(st); err != nil {
			st.Reset()
			return
		}
		trailers.Store(fmt.Sprint(st.Trailer()))
		st.WriteHead(200, nil)
		st.Finish(nil)
	})
	fr, _ := rawConn(t, s.addr)
	w := newBlockWriter(fr, 16384)
	base := []string{":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a"}
	w.write(t, 1, false, w.encode(base...))
	var tr []string
	for i := range 10 {
		tr = append(tr, fmt.Sprintf("x-t%d", i), strings.Repeat("t", 200))
	}
	w.write(t, 1, true, w.encode(tr...))
	w.write(t, 3, true, w.encode(append(base[:1:1], "GET", ":scheme", "http", ":path", "/", ":authority", "a")...))
	var rst http2.ErrCode = 100
	readUntil(t, fr, func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				rst = f.ErrCode
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				t.Fatalf("stream 1 answered %v; its handler saw trailers %v", f.Fields, trailers.Load())
			}
			return f.StreamID == 3
		}
		return false
	})
	if rst != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("stream 1: RST_STREAM %v, want ENHANCE_YOUR_CALM", rst)
	}
}

// TestHeaderBlockPastAllowanceEndsConnection: a block that goes on past
// its wire allowance (twice MaxHeaderListSize, 64 KiB at least) with
// fields, not only empty frames, still costs the connection: GOAWAY
// ENHANCE_YOUR_CALM, reported as a header_block flood.
func TestHeaderBlockPastAllowanceEndsConnection(t *testing.T) {
	var flood atomic.Value
	s := serve(t, Config{MaxHeaderListSize: 1024, OnFlood: func(reason string, _ error) { flood.Store(reason) }}, echo)
	fr, nc := rawConn(t, s.addr)
	w := newBlockWriter(http2.NewFramer(nc, nil), 16384)
	go func() {
		fields := []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"}
		w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: w.encode(fields...)})
		for i := range 1000 { // 16 MB; the allowance is 64 KiB
			w.buf.Reset()
			for j := range 16 {
				w.enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-%d-%d", i, j), Value: strings.Repeat("v", 1000)})
			}
			if w.fr.WriteContinuation(1, false, w.buf.Bytes()) != nil {
				return
			}
		}
	}()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeEnhanceYourCalm || flood.Load() != FloodHeaderBlock {
				t.Fatalf("GOAWAY %v, flood %v; want ENHANCE_YOUR_CALM and %s", ga.ErrCode, flood.Load(), FloodHeaderBlock)
			}
			return
		}
	}
}

// TestFieldOverListLimit: one field value longer than MaxHeaderListSize
// (a large cookie or token) is a head over the limit like any other: 431,
// and the connection goes on. Before, the HPACK decoder refused the string
// itself and the connection ended with GOAWAY COMPRESSION_ERROR.
func TestFieldOverListLimit(t *testing.T) {
	s := serve(t, Config{MaxHeaderListSize: 1024}, echo)
	fr, _ := rawConn(t, s.addr)
	w := newBlockWriter(fr, 512)
	base := []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"}
	w.write(t, 1, true, w.encode(append(base, "cookie", strings.Repeat("c", 3000))...))
	w.write(t, 3, true, w.encode(base...))
	statuses := map[uint32]string{}
	readUntil(t, fr, func(f http2.Frame) bool {
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			statuses[h.StreamID] = h.PseudoValue("status")
		}
		return len(statuses) == 2
	})
	if statuses[1] != "431" || statuses[3] != "200" {
		t.Fatalf("statuses %v, want 431 and 200", statuses)
	}
}

// TestTrailersAfterServerReset: trailers the client sent before it saw
// the server's RST_STREAM (after a 431, or after a response that did not
// wait for the body) are ignored, as RFC 9113 section 5.1 has frames on a
// stream the endpoint reset ignored; the block is decoded all the same, so
// the dynamic table stays in step. Before, they were HEADERS on a closed
// stream: GOAWAY PROTOCOL_ERROR, and every stream on the connection.
func TestTrailersAfterServerReset(t *testing.T) {
	s := serve(t, Config{MaxHeaderListSize: 1024}, func(st *Stream) {
		st.WriteHead(200, http.Header{"X-Late": st.Header["X-Late"]})
		st.Finish(nil) // without reading the body
	})
	fr, _ := rawConn(t, s.addr)
	w := newBlockWriter(fr, 16384)
	base := []string{":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a"}
	big := append([]string{}, base...)
	for i := range 10 {
		big = append(big, fmt.Sprintf("x-f%d", i), strings.Repeat("b", 200))
	}
	w.write(t, 1, false, w.encode(big...))  // 431 and RST_STREAM
	w.write(t, 3, false, w.encode(base...)) // 200 and RST_STREAM
	var rsts int
	readUntil(t, fr, func(f http2.Frame) bool {
		if r, ok := f.(*http2.RSTStreamFrame); ok && (r.StreamID == 1 || r.StreamID == 3) {
			rsts++
		}
		return rsts == 2
	})
	for _, id := range []uint32{1, 3} {
		fr.WriteData(id, false, []byte("body"))
		w.write(t, id, true, w.encode("x-trailer", "t", "x-late", "from-the-trailers"))
	}
	w.write(t, 5, true, w.encode(append(base, "x-late", "from-the-trailers")...))
	readUntil(t, fr, func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		if !ok || h.StreamID != 5 {
			return false
		}
		if h.PseudoValue("status") != "200" || fmt.Sprint(h.RegularFields()) != fmt.Sprint([]hpack.HeaderField{{Name: "x-late", Value: "from-the-trailers"}}) {
			t.Fatalf("stream 5 answered %v", h.Fields)
		}
		return true
	})
}
