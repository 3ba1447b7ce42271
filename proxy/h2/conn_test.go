package h2

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// testServer serves h2c with prior knowledge on loopback.
type testServer struct {
	addr  string
	mu    sync.Mutex
	conns []*Conn
	wg    sync.WaitGroup
}

func serve(t testing.TB, cfg Config, h Handler) *testServer {
	t.Helper()
	return serveWith(t, cfg, h, nil)
}

// serveWith is serve with each new connection handed to setup (if not
// nil) before it is served.
func serveWith(t testing.TB, cfg Config, h Handler, setup func(*Conn)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String()}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c := NewConn(nc, nil, cfg, h)
			if setup != nil {
				setup(c)
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c.Serve()
				nc.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func client() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}, Timeout: 20 * time.Second}
}

// echo answers with the method, path and body it read, and the request
// trailers as response trailers.
func echo(st *Stream) {
	body, err := io.ReadAll(st)
	if err != nil {
		st.Reset()
		return
	}
	h := http.Header{"Content-Type": {"text/plain"}, "X-Method": {st.Method}, "X-Path": {st.Path}}
	if c := st.Header.Get("Cookie"); c != "" {
		h["X-Cookie"] = []string{c}
	}
	if st.WriteHead(200, h) != nil {
		return
	}
	if err := st.Write(body); err != nil {
		return
	}
	st.Finish(st.Trailer())
}

func TestRequestResponse(t *testing.T) {
	s := serve(t, Config{}, echo)
	c := client()
	resp, err := c.Get("http://" + s.addr + "/a?b=c")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Method") != "GET" || resp.Header.Get("X-Path") != "/a?b=c" || len(b) != 0 {
		t.Fatalf("got %d %v %q", resp.StatusCode, resp.Header, b)
	}
}

// TestLargeBodiesBothWays: 3 MiB each way crosses both flow-control
// windows several times.
func TestLargeBodiesBothWays(t *testing.T) {
	s := serve(t, Config{StreamWindow: 64 << 10, ConnWindow: 128 << 10}, echo)
	c := client()
	body := bytes.Repeat([]byte("0123456789abcdef"), 3<<16)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Post("http://"+s.addr+"/up", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(got, body) {
				errs <- fmt.Errorf("echo: %d bytes, err %v", len(got), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestTrailersBothWays(t *testing.T) {
	s := serve(t, Config{}, echo)
	c := client()
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/t", io.MultiReader(strings.NewReader("hello")))
	req.Trailer = http.Header{"Grpc-Status": nil}
	req.Body = io.NopCloser(&trailerSetter{r: strings.NewReader("hello"), req: req})
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("body %q trailer %v", b, resp.Trailer)
	}
}

type trailerSetter struct {
	r   io.Reader
	req *http.Request
}

func (t *trailerSetter) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err == io.EOF {
		t.req.Trailer.Set("Grpc-Status", "0")
	}
	return n, err
}

func TestCookiesJoined(t *testing.T) {
	s := serve(t, Config{}, echo)
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
	req.Header["Cookie"] = []string{"a=1", "b=2"}
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Cookie"); got != "a=1; b=2" {
		t.Fatalf("cookie %q", got)
	}
}

// TestConcurrentStreams: many streams on one connection, each answered.
func TestConcurrentStreams(t *testing.T) {
	s := serve(t, Config{MaxConcurrentStreams: 16}, echo)
	c := client()
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := strings.Repeat("x", i*97)
			resp, err := c.Post("http://"+s.addr+"/", "text/plain", strings.NewReader(want))
			if err != nil {
				bad.Add(1)
				return
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != want {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of 200 failed", bad.Load())
	}
}

// TestClientResetCancels: a client that gives up resets the stream; the
// handler's context ends and the reset hook runs.
func TestClientResetCancels(t *testing.T) {
	hooked := make(chan struct{})
	ended := make(chan error, 1)
	s := serve(t, Config{}, func(st *Stream) {
		st.OnReset(func() { close(hooked) })
		st.WriteHead(200, http.Header{})
		st.Flush()
		<-st.Context().Done()
		// The hook runs just after the cancel, and never once the handler
		// has returned: stay until it ran (or the test gives up on it).
		select {
		case <-hooked:
		case <-time.After(10 * time.Second):
		}
		ended <- context.Cause(st.Context())
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.addr+"/", nil)
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	select {
	case err := <-ended:
		if err == nil || !strings.Contains(err.Error(), "reset by the client") {
			t.Fatalf("cause %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("handler not canceled")
	}
	select {
	case <-hooked:
	default:
		t.Fatal("the reset hook did not run while the handler ran")
	}
}

// TestShutdownDrains: a drain lets the stream in flight finish and ends
// the connection after it.
func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	s := serve(t, Config{}, func(st *Stream) {
		started <- struct{}{}
		<-release
		st.WriteHead(200, http.Header{})
		st.Write([]byte("done"))
		st.Finish(nil)
	})
	nc, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tr := &http2.Transport{AllowHTTP: true}
	cc, err := tr.NewClientConn(nc)
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			res <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- string(b)
	}()
	<-started
	s.mu.Lock()
	conn := s.conns[0]
	s.mu.Unlock()
	conn.Shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for cc.CanTakeNewRequest() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the client notices the GOAWAY
	}
	if cc.CanTakeNewRequest() {
		t.Fatal("client still sends after GOAWAY")
	}
	close(release)
	if got := <-res; got != "done" {
		t.Fatalf("in-flight stream: %q", got)
	}
	s.wg.Wait() // the connection ends by itself
}

// TestShutdownFinalGoAwayBeforeClose: a stream that ends while the drain
// fixes its last stream id (between the PING's ACK and the second GOAWAY
// reaching the buffer) must not end the connection first: the client
// reads the second GOAWAY before EOF. It once read EOF without it.
func TestShutdownFinalGoAwayBeforeClose(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	s := serve(t, Config{DrainWait: 20 * time.Second}, func(st *Stream) {
		started <- struct{}{}
		<-release
		st.WriteHead(200, http.Header{})
		st.Finish(nil)
	})
	fr, _ := rawConn(t, s.addr)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
		BlockFragment: headerBlock(":method", "GET", ":scheme", "http", ":path", "/", ":authority", "x")})
	<-started
	s.mu.Lock()
	conn := s.conns[0]
	s.mu.Unlock()
	testHookFinalGoAway = func() {
		close(release)
		// The stream's worker goes idle once endStream (and its
		// maybeDone) returned.
		deadline := time.Now().Add(10 * time.Second)
		for conn.idleWorkers.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	t.Cleanup(func() { testHookFinalGoAway = nil })
	conn.Shutdown()
	var goAways []uint32
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break // EOF: the server shut its write side
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			goAways = append(goAways, f.LastStreamID)
		}
	}
	if len(goAways) != 2 || goAways[0] != 1<<31-1 || goAways[1] != 1 {
		t.Fatalf("GOAWAY last stream ids %v before EOF, want [%d 1]", goAways, uint32(1<<31-1))
	}
}

// TestIdleTimeout: a connection without streams is closed with GOAWAY.
func TestIdleTimeout(t *testing.T) {
	s := serve(t, Config{IdleTimeout: 50 * time.Millisecond}, echo)
	fr, _ := rawConn(t, s.addr)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY before %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok && ga.LastStreamID == 0 {
			return
		}
	}
}

// rawConn speaks frames to the server for protocol-error cases.
func rawConn(t *testing.T, addr string) (*http2.Framer, net.Conn) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	nc.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	return fr, nc
}

func headerBlock(fields ...string) []byte {
	var b bytes.Buffer
	e := hpack.NewEncoder(&b)
	for i := 0; i < len(fields); i += 2 {
		e.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return b.Bytes()
}

// awaitReset reads until a RST_STREAM on id or a GOAWAY, and returns its
// code.
func awaitReset(t *testing.T, fr *http2.Framer, id uint32) (http2.ErrCode, bool) {
	t.Helper()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no RST_STREAM or GOAWAY: %v", err)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return f.ErrCode, false
			}
		case *http2.GoAwayFrame:
			return f.ErrCode, true
		}
	}
}

// TestMalformedRequests: each malformed head resets its stream with
// PROTOCOL_ERROR, and the connection goes on serving.
func TestMalformedRequests(t *testing.T) {
	s := serve(t, Config{}, echo)
	base := []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"}
	for i, tc := range []struct {
		name   string
		fields []string
	}{
		{"connection header", append(base, "connection", "close")},
		{"te gzip", append(base, "te", "gzip")},
		{"no path", []string{":method", "GET", ":scheme", "http"}},
		{"status in request", append(base, ":status", "200")},
		{"bad content-length", append(base, "content-length", "x")},
		{"transfer-encoding", append(base, "transfer-encoding", "chunked")},
	} {
		fr, _ := rawConn(t, s.addr)
		id := uint32(1 + 2*i)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: headerBlock(tc.fields...), EndStream: true, EndHeaders: true})
		code, conn := awaitReset(t, fr, id)
		if conn || code != http2.ErrCodeProtocol {
			t.Fatalf("%s: code %v (connection %v), want stream PROTOCOL_ERROR", tc.name, code, conn)
		}
		// The connection still serves.
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id + 2, BlockFragment: headerBlock(base...), EndStream: true, EndHeaders: true})
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("%s: connection ended: %v", tc.name, err)
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == id+2 {
				break
			}
		}
	}
}

// TestFlowControlViolation: DATA beyond the advertised window ends the
// connection with FLOW_CONTROL_ERROR.
func TestFlowControlViolation(t *testing.T) {
	s := serve(t, Config{StreamWindow: 1 << 20, ConnWindow: 65535}, func(st *Stream) {
		<-st.Context().Done()
	})
	fr, _ := rawConn(t, s.addr)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a"), EndHeaders: true})
	chunk := make([]byte, 16384)
	for range 5 {
		fr.WriteData(1, false, chunk)
	}
	code, conn := awaitReset(t, fr, 1)
	if !conn || code != http2.ErrCodeFlowControl {
		t.Fatalf("code %v connection %v, want GOAWAY FLOW_CONTROL_ERROR", code, conn)
	}
}

// TestGarbageEndsConnection: bytes that are not HTTP/2 end the connection
// without a handler running.
func TestGarbageEndsConnection(t *testing.T) {
	var ran atomic.Bool
	s := serve(t, Config{}, func(*Stream) { ran.Store(true) })
	nc, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	nc.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n" + strings.Repeat("z", 100)))
	_, err = io.Copy(io.Discard, nc)
	if err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Fatal("a handler ran")
	}
}

// TestHeaderListTooLarge: a request head over MaxHeaderListSize gets 431,
// and the connection goes on serving.
func TestHeaderListTooLarge(t *testing.T) {
	var ran atomic.Int32
	s := serve(t, Config{MaxHeaderListSize: 1024}, func(st *Stream) {
		ran.Add(1)
		echo(st)
	})
	fr, _ := rawConn(t, s.addr)
	base := []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"}
	big := append([]string{}, base...)
	for i := range 10 {
		big = append(big, fmt.Sprintf("x-f%d", i), strings.Repeat("b", 200))
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(big...), EndStream: true, EndHeaders: true})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: headerBlock(base...), EndStream: true, EndHeaders: true})
	got := map[uint32]string{}
	for len(got) < 2 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			got[h.StreamID] = h.PseudoValue("status")
		}
	}
	if got[1] != "431" || got[3] != "200" || ran.Load() != 1 {
		t.Fatalf("statuses %v, handler ran %d times", got, ran.Load())
	}
}

// TestEmptyContinuationFlood: a header block that never ends, sent as
// empty CONTINUATION frames (nothing to decode, so no header limit is
// reached), ends the connection with ENHANCE_YOUR_CALM once its frames
// pass the block's allowance; before, the server read them for as long as
// the client sent them.
func TestEmptyContinuationFlood(t *testing.T) {
	var ran atomic.Int32
	s := serve(t, Config{MaxHeaderListSize: 1024}, func(st *Stream) { ran.Add(1); echo(st) })
	fr, nc := rawConn(t, s.addr)
	const frames = 100_000 // 900 KB of frame headers; the allowance is 64 KiB
	var sent atomic.Int64
	go func() {
		w := http2.NewFramer(nc, nil)
		w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(":method", "GET"), EndStream: true})
		for range frames {
			if w.WriteContinuation(1, false, nil) != nil {
				return // the server closed the connection
			}
			sent.Add(1)
		}
	}()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY: %v (%d empty CONTINUATION frames sent)", err, sent.Load())
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeEnhanceYourCalm || ran.Load() != 0 {
				t.Fatalf("GOAWAY %v, handler ran %d times; want ENHANCE_YOUR_CALM and no stream", ga.ErrCode, ran.Load())
			}
			return
		}
	}
}

// TestTooManyHeaderFields: more fields than MaxHeaders get 431 too.
func TestTooManyHeaderFields(t *testing.T) {
	s := serve(t, Config{MaxHeaders: 8}, echo)
	fr, _ := rawConn(t, s.addr)
	fields := []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"}
	for i := range 9 {
		fields = append(fields, fmt.Sprintf("x-f%d", i), "v")
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(fields...), EndStream: true, EndHeaders: true})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			if st := h.PseudoValue("status"); st != "431" {
				t.Fatalf("status %s, want 431", st)
			}
			return
		}
	}
}

// TestExpectContinue: a client that waits for 100 Continue gets it when
// the handler starts reading, then the final response.
func TestExpectContinue(t *testing.T) {
	s := serve(t, Config{}, echo)
	fr, _ := rawConn(t, s.addr)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a", "expect", "100-continue"), EndHeaders: true})
	var statuses []string
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			statuses = append(statuses, f.PseudoValue("status"))
			if len(statuses) == 1 {
				fr.WriteData(1, true, []byte("body"))
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				if strings.Join(statuses, ",") != "100,200" {
					t.Fatalf("statuses %v", statuses)
				}
				return
			}
		}
	}
}

// TestShutdownBeforeServe: a drain that begins before Serve still sends
// the server preface (SETTINGS) first, then the GOAWAY.
func TestShutdownBeforeServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		c := NewConn(nc, nil, Config{DrainWait: 50 * time.Millisecond}, echo)
		c.Shutdown()
		c.Serve()
	}()
	fr, _ := rawConn(t, ln.Addr().String())
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(*http2.SettingsFrame); !ok {
		t.Fatalf("first frame %v, want SETTINGS", f.Header())
	}
	var goaways int
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break // the server closed after its final GOAWAY
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			goaways++
		}
	}
	if goaways != 2 {
		t.Fatalf("%d GOAWAY frames, want 2 (two-phase)", goaways)
	}
	<-done
}

// TestResetHookNeverAfterReturn: a client reset racing the handler's
// return never runs the hook after the handler returned (the proxy's
// session behind it is reused by then).
func TestResetHookNeverAfterReturn(t *testing.T) {
	var late atomic.Int32
	s := serve(t, Config{}, func(st *Stream) {
		var returned atomic.Bool
		st.OnReset(func() {
			if returned.Load() {
				late.Add(1)
			}
		})
		defer returned.Store(true)
		st.WriteHead(200, http.Header{})
		st.Flush()
	})
	c := client()
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.addr+"/", nil)
			resp, err := c.Do(req)
			cancel() // resets the stream if it is still open
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if late.Load() != 0 {
		t.Fatalf("the reset hook ran %d times after its handler returned", late.Load())
	}
}

// TestBodyBufferBounded: a reader that stays a byte behind a client that
// keeps sending holds about a window of body in memory, not every byte
// received.
func TestBodyBufferBounded(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go io.Copy(io.Discard, b) // the WINDOW_UPDATEs the reads cause
	c := NewConn(a, nil, Config{}, nil)
	st := &Stream{c: c, id: 1, bodyWake: make(chan struct{}, 1)}
	st.deliver([]byte{0}, false)
	chunk := make([]byte, 16<<10)
	p := make([]byte, len(chunk))
	for range 1000 {
		st.deliver(chunk, false)
		if n, err := st.Read(p); n != len(p) || err != nil {
			t.Fatalf("read %d %v", n, err)
		}
	}
	if c := cap(st.buf); c > 4*len(chunk) {
		t.Fatalf("body buffer grew to %d bytes with %d unread", c, len(st.buf)-st.off)
	}
}

// TestReadInterrupted: InterruptRead wakes a Read that waits for DATA,
// and Reads fail the same way until ResumeRead; then the body reads on,
// nothing lost.
func TestReadInterrupted(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go io.Copy(io.Discard, b)
	c := NewConn(a, nil, Config{StreamIdleTimeout: time.Minute}, nil)
	st := &Stream{c: c, id: 1, bodyWake: make(chan struct{}, 1)}
	st.deliver([]byte("he"), false)
	p := make([]byte, 8)
	if n, err := st.Read(p); n != 2 || err != nil {
		t.Fatalf("read %d %v", n, err)
	}
	woken := make(chan error, 1)
	go func() {
		_, err := st.Read(p) // waits for DATA that does not come
		woken <- err
	}()
	st.InterruptRead()
	select {
	case err := <-woken:
		if !errors.Is(err, ErrReadInterrupted) {
			t.Fatalf("woken read: %v", err)
		}
	case <-time.After(5 * time.Second): // a guard, well under StreamIdleTimeout
		t.Fatal("the read was not woken")
	}
	if _, err := st.Read(p); !errors.Is(err, ErrReadInterrupted) {
		t.Fatalf("read before ResumeRead: %v", err)
	}
	st.ResumeRead()
	st.deliver([]byte("llo"), true)
	if got, err := io.ReadAll(readerFunc(st.Read)); string(got) != "llo" || err != nil {
		t.Fatalf("read on: %q %v", got, err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
