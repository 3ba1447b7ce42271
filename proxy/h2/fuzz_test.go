package h2

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pingora-go/pingora-go/proxy/h1"
	"github.com/pingora-go/pingora-go/proxy/internal/hostile"
)

// FuzzServeFrames drives a real server connection over net.Pipe: a valid
// preface and SETTINGS, then the frames decoded from the input (see
// decodeOps), then a PING; once answered, the handlers run until they wait
// on the client, and the client closes. Properties: no panic; no deadlock
// (the PING is answered or the connection ends within fuzzBound, by the
// client conn's deadline); everything the server writes parses as HTTP/2;
// what a handler sees passes checkRequest; after the client closes, Serve
// returns within fuzzBound and no goroutine is left (synctest). Seeds live
// in testdata/fuzz/FuzzServeFrames (fuzzSeeds; issue 11 item 5).
func FuzzServeFrames(f *testing.F) {
	// The shared lists of hostile heads (issue 11 item 1) seed it too, each
	// followed by a valid request, so the corpus grows with them.
	for _, list := range [][]hostile.H2Request{hostile.H2Malformed, hostile.H2Accepted} {
		for _, r := range list {
			f.Add(encodeOps(append(hostileOps(r), request(3, true, getFields...))))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runFuzzConn(t, decodeOps(data))
	})
}

// fuzzBound bounds every wait of the harness: generous, as the fuzzer
// shares a loaded machine, and far below the server's own timeouts.
const fuzzBound = 10 * time.Second

// A fuzzOp is one step of the client: a frame, written as is, or one of
// the harness operations below.
type fuzzOp struct {
	kind    byte // frame type 0-15, opFields or opShutdown
	flags   http2.Flags
	id      uint32
	payload []byte
}

const (
	// opFields is a HEADERS frame whose payload is a field list, each field
	// a length byte and a name, a length byte and a value, that the
	// harness HPACK-encodes: the fuzzer mutates names and values directly.
	opFields = 0xfe
	// opShutdown makes the server start a drain (Conn.Shutdown).
	opShutdown = 0xff
)

// decodeOps splits the input into ops of 4 header bytes and a payload:
// kind (opFields, opShutdown, else the frame type is kind%16: 0-9 are the
// RFC 9113 types, 10-15 unknown ones), flags, stream (0-239 as is, 240-255
// count down from 2^31-1), length (255 means the next two bytes, big
// endian), then the payload, shorter at the end of the input.
func decodeOps(data []byte) []fuzzOp {
	var ops []fuzzOp
	for len(data) >= 4 {
		op := fuzzOp{kind: data[0], flags: http2.Flags(data[1]), id: uint32(data[2])}
		if op.kind != opFields && op.kind != opShutdown {
			op.kind %= 16
		}
		if data[2] >= 240 {
			op.id = 1<<31 - 1 - uint32(255-data[2])
		}
		n := int(data[3])
		data = data[4:]
		if n == 255 && len(data) >= 2 {
			n, data = int(binary.BigEndian.Uint16(data)), data[2:]
		}
		n = min(n, len(data))
		op.payload, data = data[:n], data[n:]
		ops = append(ops, op)
	}
	return ops
}

// encodeOps is decodeOps' inverse, for seeds.
func encodeOps(ops []fuzzOp) []byte {
	var b []byte
	for _, op := range ops {
		id := byte(op.id)
		if op.id >= 240 {
			id = byte(255 - (1<<31 - 1 - op.id))
		}
		b = append(b, op.kind, byte(op.flags), id)
		if n := len(op.payload); n < 255 {
			b = append(b, byte(n))
		} else {
			b = append(b, 255, byte(n>>8), byte(n))
		}
		b = append(b, op.payload...)
	}
	return b
}

// hostileOps sends a request of the shared list on stream 1: one opFields
// HEADERS, or with Split a raw HEADERS and CONTINUATION.
func hostileOps(r hostile.H2Request) []fuzzOp {
	var pairs []string
	for _, f := range r.Fields {
		pairs = append(pairs, f.Name, f.Value)
	}
	if !r.Split {
		return []fuzzOp{request(1, true, pairs...)}
	}
	block := headerBlock(pairs...)
	return []fuzzOp{
		{kind: byte(http2.FrameHeaders), flags: http2.FlagHeadersEndStream, id: 1, payload: block[:len(block)/2]},
		{kind: byte(http2.FrameContinuation), flags: http2.FlagContinuationEndHeaders, id: 1, payload: block[len(block)/2:]},
	}
}

// fieldList encodes name, value pairs as an opFields payload.
func fieldList(fields ...string) []byte {
	var b []byte
	for _, s := range fields {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return b
}

func fuzzConfig() Config {
	return Config{MaxConcurrentStreams: 4, MaxHeaderListSize: 8 << 10, MaxHeaders: 32,
		StreamWindow: initialWindow, ConnWindow: initialWindow}
}

// fuzzClient is the client end of one fuzzed connection. Only the test's
// goroutine writes; one reader goroutine reads.
type fuzzClient struct {
	t      *testing.T
	c      *Conn
	nc     net.Conn
	wfr    *http2.Framer
	henc   *hpack.Encoder
	hbuf   bytes.Buffer
	marker [8]byte
	acks   chan [8]byte  // payloads of the server's PINGs, to acknowledge
	pong   chan struct{} // closed when the marker PING is acknowledged

	readDone chan struct{} // closed when the reader returned readErr
	readErr  error         // nil when the connection ended
	seen     fuzzResult    // the reader's, until readDone
}

// fuzzResult is what the server answered: per stream the first :status
// and the RST_STREAM code, and the last GOAWAY code (-1 for none).
type fuzzResult struct {
	status map[uint32]string
	reset  map[uint32]http2.ErrCode
	goAway int64
}

// runFuzzConn runs one input in a synctest bubble: time is fake, so the
// deadline costs nothing unless everything is stuck, and the bubble fails
// the test when any goroutine outlives it.
func runFuzzConn(t *testing.T, ops []fuzzOp) (res fuzzResult) {
	synctest.Test(t, func(t *testing.T) { res = fuzzConnInBubble(t, ops) })
	return res
}

func fuzzConnInBubble(t *testing.T, ops []fuzzOp) fuzzResult {
	a, b := net.Pipe()
	defer b.Close()
	b.SetDeadline(time.Now().Add(fuzzBound))
	fc := &fuzzClient{t: t, nc: b, wfr: http2.NewFramer(b, nil),
		acks: make(chan [8]byte, 4), pong: make(chan struct{}), readDone: make(chan struct{}),
		seen: fuzzResult{status: map[uint32]string{}, reset: map[uint32]http2.ErrCode{}, goAway: -1}}
	fc.henc = hpack.NewEncoder(&fc.hbuf)
	binary.BigEndian.PutUint64(fc.marker[:], rand.Uint64())
	fc.c = NewConn(a, nil, fuzzConfig(), fuzzHandler(t))
	served := make(chan struct{})
	go func() {
		defer close(served)
		fc.c.Serve()
		a.Close()
	}()
	go func() {
		defer close(fc.readDone)
		fc.readErr = fc.readLoop()
	}()
	err := fc.writeAll(ops)
	if err == nil {
		err = fc.awaitPong()
	}
	if err == nil {
		err = fc.settle()
	}
	if errors.Is(err, io.ErrClosedPipe) {
		err = nil // the server ended the connection
	}
	b.Close()
	<-fc.readDone
	if err == nil {
		err = fc.readErr
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, allStacks())
	}
	select {
	case <-served:
	case <-time.After(fuzzBound):
		t.Fatalf("Serve did not return within %v of the client closing\n%s", fuzzBound, allStacks())
	}
	return fc.seen
}

// writeAll writes the preface, SETTINGS, the ops and the marker PING. It
// stops at io.ErrClosedPipe when the server ends the connection.
func (fc *fuzzClient) writeAll(ops []fuzzOp) error {
	err := fc.write(func() error {
		if _, err := fc.nc.Write([]byte(http2.ClientPreface)); err != nil {
			return err
		}
		return fc.wfr.WriteSettings()
	})
	for _, op := range ops {
		if err != nil {
			break
		}
		if err = fc.ackPings(); err == nil {
			err = fc.write(func() error { return fc.apply(op) })
		}
	}
	if err == nil {
		err = fc.write(func() error { return fc.wfr.WritePing(false, fc.marker) })
	}
	return err
}

// write runs one write: io.ErrClosedPipe when the server closed, and a
// write that makes no progress within the deadline is a deadlock.
func (fc *fuzzClient) write(f func() error) error {
	if err := f(); err != nil {
		if errors.Is(err, io.ErrClosedPipe) {
			return err
		}
		return fmt.Errorf("the server stopped reading: %w", err)
	}
	return nil
}

func (fc *fuzzClient) apply(op fuzzOp) error {
	switch op.kind {
	case opShutdown:
		fc.c.Shutdown()
		return nil
	case opFields:
		fc.hbuf.Reset()
		p := op.payload
		for len(p) > 0 {
			var name, value string
			name, p = lengthPrefixed(p)
			value, p = lengthPrefixed(p)
			fc.henc.WriteField(hpack.HeaderField{Name: name, Value: value})
		}
		flags := op.flags & (http2.FlagHeadersEndStream | http2.FlagHeadersEndHeaders)
		return fc.wfr.WriteRawFrame(http2.FrameHeaders, flags, op.id, fc.hbuf.Bytes())
	}
	return fc.wfr.WriteRawFrame(http2.FrameType(op.kind), op.flags, op.id, op.payload)
}

// lengthPrefixed splits a length byte and that many bytes (fewer at the
// end) off p; nothing left is an empty string.
func lengthPrefixed(p []byte) (string, []byte) {
	if len(p) == 0 {
		return "", nil
	}
	n := min(int(p[0]), len(p)-1)
	return string(p[1 : 1+n]), p[1+n:]
}

// ackPings acknowledges the server's PINGs read so far (a drain's), as a
// client does.
func (fc *fuzzClient) ackPings() error {
	for {
		select {
		case d := <-fc.acks:
			if err := fc.ack(d); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

func (fc *fuzzClient) ack(d [8]byte) error {
	return fc.write(func() error { return fc.wfr.WritePing(true, d) })
}

// awaitPong waits for the answer to the marker PING, or for the reader to
// end (the connection ended, the deadline passed, or a bad frame).
func (fc *fuzzClient) awaitPong() error {
	for {
		select {
		case d := <-fc.acks:
			if err := fc.ack(d); err != nil {
				return err
			}
		case <-fc.pong:
			return nil
		case <-fc.readDone:
			return nil
		}
	}
}

// settle lets the server and its handlers run until each waits on the
// client or is done (synctest.Wait), acknowledging the server's PINGs.
func (fc *fuzzClient) settle() error {
	for {
		synctest.Wait()
		if len(fc.acks) == 0 {
			return nil
		}
		if err := fc.ackPings(); err != nil {
			return err
		}
	}
}

// readLoop reads what the server writes until the connection ends. A
// frame that does not parse, or the deadline, is an error.
func (fc *fuzzClient) readLoop() error {
	rfr := http2.NewFramer(nil, fc.nc)
	rfr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rfr.SetMaxReadFrameSize(1<<24 - 1)
	for {
		f, err := rfr.ReadFrame()
		var ne net.Error
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrClosedPipe):
			return nil
		case errors.As(err, &ne) && ne.Timeout():
			return fmt.Errorf("no answer and no end within %v: %w", fuzzBound, err)
		case err != nil:
			return fmt.Errorf("the server wrote a frame that does not parse: %w", err)
		}
		fc.note(f)
	}
}

func (fc *fuzzClient) note(f http2.Frame) {
	switch f := f.(type) {
	case *http2.PingFrame:
		switch {
		case !f.IsAck():
			select {
			case fc.acks <- f.Data:
			default: // more than a drain sends
			}
		case f.Data == fc.marker:
			close(fc.pong)
		}
	case *http2.MetaHeadersFrame:
		if _, ok := fc.seen.status[f.StreamID]; !ok {
			fc.seen.status[f.StreamID] = f.PseudoValue("status")
		}
	case *http2.RSTStreamFrame:
		fc.seen.reset[f.StreamID] = f.ErrCode
	case *http2.GoAwayFrame:
		fc.seen.goAway = int64(f.ErrCode)
	}
}

// fuzzHandler checks what reaches it and answers by path: "/reset" resets,
// "/early" answers before reading the body, "/big" writes more than the
// initial window, anything else echoes the body and the trailers.
func fuzzHandler(t *testing.T) Handler {
	return func(st *Stream) {
		if err := checkRequest(st); err != nil {
			t.Errorf("handler got an invalid request: %v", err)
		}
		switch {
		case strings.HasPrefix(st.Path, "/reset"):
			st.Reset()
			return
		case strings.HasPrefix(st.Path, "/early"):
			st.WriteHead(200, http.Header{"Content-Length": {"0"}})
			st.Finish(nil)
			return
		}
		body, err := io.ReadAll(st)
		if err != nil {
			return // the stream failed: the handler returns
		}
		if err := checkFields(st.Trailer()); err != nil {
			t.Errorf("handler got an invalid trailer: %v", err)
		}
		if st.ContentLength >= 0 && int64(len(body)) != st.ContentLength {
			t.Errorf("body of %d bytes, content-length %d", len(body), st.ContentLength)
		}
		if strings.HasPrefix(st.Path, "/big") {
			body = make([]byte, 3*initialWindow)
		}
		st.WriteHead(200, http.Header{"X-Path": {st.Path}})
		if st.Write(body) == nil {
			st.Finish(st.Trailer())
		}
	}
}

// checkRequest asserts what newStream promises the proxy behind it: the
// request grammar of RFC 9113 section 8.3.1 and of proxy/h1 (issue 11
// item 1), and that the request, written as the proxy writes it to an
// HTTP/1.1 upstream, parses back as the same request.
func checkRequest(st *Stream) error {
	switch {
	case !h1.ValidMethod(st.Method):
		return fmt.Errorf("method %q", st.Method)
	case st.Method == http.MethodConnect:
		if st.Scheme != "" || st.Path != "" || !h1.ValidTarget(st.Method, st.Authority) {
			return fmt.Errorf("CONNECT %q %q %q", st.Authority, st.Scheme, st.Path)
		}
	case st.Scheme != "http" && st.Scheme != "https":
		return fmt.Errorf("scheme %q", st.Scheme)
	case !h1.ValidTarget(st.Method, st.Path):
		return fmt.Errorf("path %q", st.Path)
	case !h1.ValidAuthority(st.Authority):
		return fmt.Errorf("authority %q", st.Authority)
	}
	if err := checkFields(st.Header); err != nil {
		return err
	}
	cl := st.Header["Content-Length"]
	if (len(cl) == 0) != (st.ContentLength == -1) {
		return fmt.Errorf("content-length %q, ContentLength %d", cl, st.ContentLength)
	}
	for _, v := range cl {
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n != st.ContentLength {
			return fmt.Errorf("content-length %q, ContentLength %d", cl, st.ContentLength)
		}
	}
	return checkH1RoundTrip(st)
}

// checkFields asserts a request's header or trailer section: canonical
// token names, values HTTP/1.1 carries unchanged, no connection-specific
// field, no Host, TE only "trailers".
func checkFields(h http.Header) error {
	for k, vs := range h {
		switch {
		case textproto.CanonicalMIMEHeaderKey(k) != k || !h1.ValidFieldName(k):
			return fmt.Errorf("field name %q", k)
		case connectionSpecific(strings.ToLower(k)) || k == "Host":
			return fmt.Errorf("field %q kept", k)
		case k == "Te" && (len(vs) != 1 || vs[0] != "trailers"):
			return fmt.Errorf("te %q", vs)
		}
		for _, v := range vs {
			if !h1.ValidFieldValue(v) {
				return fmt.Errorf("field %s value %q", k, v)
			}
		}
	}
	return nil
}

// checkH1RoundTrip writes the request head with h1.WriteRequestHead, as
// the proxy forwards it to an HTTP/1.1 upstream, and reads it back with
// h1's parser: the same method, target, host and fields, or the downgrade
// is ambiguous. A 417 (an expectation HTTP/1.1 servers may refuse) is
// policy, not ambiguity.
func checkH1RoundTrip(st *Stream) error {
	target := st.Path
	if st.Method == http.MethodConnect {
		target = st.Authority
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := h1.WriteRequestHead(w, st.Method, target, st.Authority, st.Header); err != nil {
		return fmt.Errorf("accepted, but not writable as HTTP/1.1: %w", err)
	}
	w.Flush()
	written := buf.String()
	var req h1.Request
	err := h1.NewReader(bufio.NewReader(&buf), h1.Limits{}).ReadRequest(&req)
	switch {
	case err != nil && h1.StatusOf(err) == http.StatusExpectationFailed:
		return nil
	case err != nil:
		return fmt.Errorf("written as %q, which HTTP/1.1 refuses: %w", written, err)
	case req.Method != st.Method || req.Target != target || req.Host != st.Authority:
		return fmt.Errorf("written as %q, read back as %s %s host %s", written, req.Method, req.Target, req.Host)
	}
	delete(req.Header, "Host")
	if !reflect.DeepEqual(map[string][]string(req.Header), map[string][]string(st.Header)) {
		return fmt.Errorf("fields %q read back as %q", st.Header, req.Header)
	}
	return nil
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
