package h2

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// fakeClock is the flood guard's clock in these tests: it moves only when
// told, so a flood is a flood however slowly the test runs.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// floods records what Config.OnFlood was told.
type floods struct {
	mu      sync.Mutex
	reasons []string
}

func (f *floods) add(reason string, _ error) {
	f.mu.Lock()
	f.reasons = append(f.reasons, reason)
	f.mu.Unlock()
}

func (f *floods) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reasons...)
}

// serveClocked is serve with the flood guard on clk and OnFlood recorded
// in fl.
func serveClocked(t *testing.T, cfg Config, h Handler, clk *fakeClock, fl *floods) *testServer {
	t.Helper()
	cfg.OnFlood = fl.add
	return serveWith(t, cfg, h, func(c *Conn) { c.flood.now = clk.now })
}

var markPing = [8]byte{'m', 'a', 'r', 'k'}

// TestFloodsEndConnection: a client that sends frames asking for nothing
// gets GOAWAY ENHANCE_YOUR_CALM once the flood budget is spent, and
// OnFlood hears of it; before, the server answered every one of them for
// as long as the client sent them (each subtest read the ACK of the PING
// sent after the flood).
func TestFloodsEndConnection(t *testing.T) {
	const frames = 20 * floodBurst
	get := headerBlock(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/")
	post := headerBlock(":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/")
	cases := []struct {
		name string
		open func(w *http2.Framer) // what comes before the flood
		send func(w *http2.Framer) error
	}{
		{"PING", nil, func(w *http2.Framer) error { return w.WritePing(false, [8]byte{1}) }},
		{"SETTINGS", nil, func(w *http2.Framer) error { return w.WriteSettings() }},
		{"empty DATA", func(w *http2.Framer) {
			w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: post, EndHeaders: true})
		}, func(w *http2.Framer) error { return w.WriteData(1, false, nil) }},
		{"connection WINDOW_UPDATE", nil, func(w *http2.Framer) error { return w.WriteWindowUpdate(0, 1) }},
		{"stream WINDOW_UPDATE", func(w *http2.Framer) {
			w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: post, EndHeaders: true})
		}, func(w *http2.Framer) error { return w.WriteWindowUpdate(1, 1) }},
		{"PRIORITY", nil, func(w *http2.Framer) error {
			return w.WritePriority(3, http2.PriorityParam{Weight: 15})
		}},
		{"RST_STREAM of a closed stream", func(w *http2.Framer) {
			w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get, EndStream: true, EndHeaders: true})
		}, func(w *http2.Framer) error { return w.WriteRSTStream(1, http2.ErrCodeCancel) }},
		{"unknown type", nil, func(w *http2.Framer) error { return w.WriteRawFrame(0xfa, 0, 0, nil) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var fl floods
			s := serveClocked(t, Config{}, echo, new(fakeClock), &fl)
			fr, nc := rawConn(t, s.addr)
			go func() {
				w := http2.NewFramer(nc, nil)
				if tc.open != nil {
					tc.open(w)
				}
				for range frames {
					if tc.send(w) != nil {
						return // the server closed the connection
					}
				}
				w.WritePing(false, markPing)
			}()
			acks := 0
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("no GOAWAY: %v", err)
				}
				switch f := f.(type) {
				case *http2.PingFrame:
					if f.Data == markPing {
						t.Fatalf("the server read %d %s frames and went on", frames, tc.name)
					}
					acks++
				case *http2.SettingsFrame:
					if f.IsAck() {
						acks++
					}
				case *http2.GoAwayFrame:
					if f.ErrCode != http2.ErrCodeEnhanceYourCalm {
						t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", f.ErrCode)
					}
					if acks > floodBurst {
						t.Fatalf("%d replies before the GOAWAY, want at most %d", acks, floodBurst)
					}
					if got := fl.take(); len(got) != 1 || got[0] != FloodFrames {
						t.Fatalf("OnFlood told %q, want [%s]", got, FloodFrames)
					}
					return
				}
			}
		})
	}
}

// TestUnreadRepliesBlockReader: the replies to a client that sends PINGs
// and never reads do not queue in the server: the reader writes each one
// itself, blocks on the first the client does not take, reads nothing
// more, and the connection ends after WriteTimeout.
func TestUnreadRepliesBlockReader(t *testing.T) {
	cn, sn := net.Pipe() // unbuffered: a write waits for the other side's read
	defer cn.Close()
	c := NewConn(sn, nil, Config{WriteTimeout: 100 * time.Millisecond}, echo)
	done := make(chan error, 1)
	go func() { done <- c.Serve() }()
	cn.SetDeadline(time.Now().Add(20 * time.Second))
	go cn.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(cn, cn)
	if f, err := fr.ReadFrame(); err != nil || f.Header().Type != http2.FrameSettings {
		t.Fatalf("server preface: %v %v", f, err)
	}
	if _, err := fr.ReadFrame(); err != nil { // the connection's WINDOW_UPDATE
		t.Fatal(err)
	}
	sent := 0
	for range 100 {
		if fr.WritePing(false, [8]byte{1}) != nil {
			break
		}
		sent++
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the connection did not end")
	}
	// The first PING was read and its ACK blocked; the second may have
	// been taken by the reader's buffer; none after.
	if sent > 2 {
		t.Fatalf("the server read %d PINGs while its replies went unread", sent)
	}
}

// TestLegitimateSessionsNoFlood: what real clients send for long sessions
// stays within the budget: a browser's connection with thousands of
// requests, a large upload in tiny DATA frames, a gRPC stream of small
// messages with a client that returns window eagerly and measures the
// bandwidth with PINGs, and an idle stream kept alive by PINGs for hours.
func TestLegitimateSessionsNoFlood(t *testing.T) {
	t.Run("browser, many small requests", testBrowserSession)
	t.Run("upload in 16-byte DATA frames", testTinyFrameUpload)
	t.Run("download read in small pieces", testSmallReadDownload)
	t.Run("gRPC stream of small messages", testGRPCStream)
	t.Run("idle stream with keepalive PINGs", testKeepalivePings)
}

// expectNoGoAway fails on a GOAWAY or an error.
func expectNoGoAway(t *testing.T, f http2.Frame, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if ga, ok := f.(*http2.GoAwayFrame); ok {
		t.Fatalf("GOAWAY %v: %s", ga.ErrCode, ga.DebugData())
	}
}

func checkNoFlood(t *testing.T, fl *floods) {
	t.Helper()
	if got := fl.take(); len(got) > 0 {
		t.Fatalf("flood reported: %q", got)
	}
}

// testBrowserSession: Firefox's start (SETTINGS, a large connection
// window, PRIORITY frames for five idle streams of its dependency tree),
// then 5,000 requests, ten at a time, each with a PRIORITY_UPDATE, and a
// connection and a stream WINDOW_UPDATE for each response, and a PING
// every 50 requests.
func testBrowserSession(t *testing.T) {
	var fl floods
	body := bytes.Repeat([]byte("x"), 100)
	s := serveClocked(t, Config{}, func(st *Stream) {
		st.WriteHead(200, http.Header{"Content-Length": {"100"}})
		st.Write(body)
		st.Finish(nil)
	}, new(fakeClock), &fl)
	fr, nc := rawConn(t, s.addr)
	w := http2.NewFramer(nc, nil)
	w.WriteWindowUpdate(0, 15<<20)
	for id := uint32(3); id <= 11; id += 2 {
		w.WritePriority(id, http2.PriorityParam{StreamDep: 0, Weight: 200})
	}
	get := headerBlock(":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/a.png")
	id := uint32(13)
	for batch := range 500 {
		for i := range 10 {
			w.WriteHeaders(http2.HeadersFrameParam{StreamID: id + uint32(2*i), BlockFragment: get, EndStream: true, EndHeaders: true,
				Priority: http2.PriorityParam{StreamDep: 3, Weight: 21}})
			w.WriteRawFrame(0x10, 0, 0, []byte{0, 0, 0, byte(id), 'u', '=', '3'}) // PRIORITY_UPDATE
		}
		if batch%5 == 0 {
			w.WritePing(false, [8]byte{byte(batch)})
		}
		for ended := 0; ended < 10; {
			f, err := fr.ReadFrame()
			expectNoGoAway(t, f, err)
			if d, ok := f.(*http2.DataFrame); ok {
				if len(d.Data()) > 0 {
					w.WriteWindowUpdate(0, uint32(len(d.Data())))
					w.WriteWindowUpdate(d.StreamID, uint32(len(d.Data())))
				}
				if d.StreamEnded() {
					ended++
				}
			}
		}
		id += 20
	}
	checkNoFlood(t, &fl)
}

// testTinyFrameUpload: a 960 KB body (under both windows) in 60,000 DATA
// frames of 16 bytes.
func testTinyFrameUpload(t *testing.T) {
	var fl floods
	s := serveClocked(t, Config{}, func(st *Stream) {
		n, _ := io.Copy(io.Discard, st)
		st.WriteHead(200, http.Header{"X-Got": {strconv.FormatInt(n, 10)}})
		st.Finish(nil)
	}, new(fakeClock), &fl)
	fr, nc := rawConn(t, s.addr)
	w := http2.NewFramer(nc, nil)
	const frames, size = 60_000, 16
	go func() {
		w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
			BlockFragment: headerBlock(":method", "PUT", ":scheme", "http", ":authority", "x", ":path", "/up")})
		chunk := make([]byte, size)
		for range frames {
			if w.WriteData(1, false, chunk) != nil {
				return
			}
		}
		w.WriteData(1, true, nil)
	}()
	for {
		f, err := fr.ReadFrame()
		expectNoGoAway(t, f, err)
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			got := ""
			for _, hf := range h.RegularFields() {
				if hf.Name == "x-got" {
					got = hf.Value
				}
			}
			if st := h.PseudoValue("status"); st != "200" || got != strconv.Itoa(frames*size) {
				t.Fatalf("status %s, %q bytes read", st, got)
			}
			break
		}
	}
	checkNoFlood(t, &fl)
}

// testGRPCStream: 5,000 messages each way on one stream, each its own DATA
// frame; the client returns window for every message it gets, to the
// stream and the connection, and sends a BDP PING every 16.
func testGRPCStream(t *testing.T) {
	var fl floods
	const msgs, size = 5000, 15 // a 5-byte gRPC prefix and 10 bytes
	s := serveClocked(t, Config{}, func(st *Stream) {
		st.WriteHead(200, http.Header{"Content-Type": {"application/grpc"}})
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(st, buf); err != nil {
				break
			}
			if st.Write(buf) != nil || st.Flush() != nil {
				return
			}
		}
		st.Finish(http.Header{"Grpc-Status": {"0"}})
	}, new(fakeClock), &fl)
	fr, nc := rawConn(t, s.addr)
	w := http2.NewFramer(nc, nil)
	w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: headerBlock(
		":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/svc/Stream", "content-type", "application/grpc", "te", "trailers")})
	msg := make([]byte, size)
	for i := range msgs {
		w.WriteData(1, false, msg)
		for got := false; !got; {
			f, err := fr.ReadFrame()
			expectNoGoAway(t, f, err)
			if d, ok := f.(*http2.DataFrame); ok && len(d.Data()) > 0 {
				got = true
				w.WriteWindowUpdate(0, uint32(len(d.Data())))
				w.WriteWindowUpdate(1, uint32(len(d.Data())))
			}
		}
		if i%16 == 0 {
			w.WritePing(false, [8]byte{'b', 'd', 'p'})
		}
	}
	w.WriteData(1, true, nil)
	for {
		f, err := fr.ReadFrame()
		expectNoGoAway(t, f, err)
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamEnded() {
			break
		}
	}
	checkNoFlood(t, &fl)
}

// testKeepalivePings: a stream waits for its body for 14 hours (by the
// guard's clock) while the client sends a keepalive PING every 10 s:
// 5,000 PINGs and no request or body among them.
func testKeepalivePings(t *testing.T) {
	var fl floods
	clk := new(fakeClock)
	s := serveClocked(t, Config{}, echo, clk, &fl)
	fr, nc := rawConn(t, s.addr)
	w := http2.NewFramer(nc, nil)
	w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
		BlockFragment: headerBlock(":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/watch")})
	for i := range 5000 {
		clk.advance(10 * time.Second)
		w.WritePing(false, [8]byte{'k', byte(i >> 8), byte(i)})
		for acked := false; !acked; {
			f, err := fr.ReadFrame()
			expectNoGoAway(t, f, err)
			p, ok := f.(*http2.PingFrame)
			acked = ok && p.IsAck()
		}
	}
	w.WriteData(1, true, []byte("done"))
	for {
		f, err := fr.ReadFrame()
		expectNoGoAway(t, f, err)
		if d, ok := f.(*http2.DataFrame); ok && d.StreamEnded() {
			break
		}
	}
	checkNoFlood(t, &fl)
}

// testSmallReadDownload: Go's client returns window each time 4 KiB of a
// body were read, to the stream and to the connection: reading 1 KiB at a
// time, up to five WINDOW_UPDATEs for each 16 KiB DATA frame.
func testSmallReadDownload(t *testing.T) {
	var fl floods
	const size = 32 << 20
	chunk := make([]byte, 64<<10)
	s := serveClocked(t, Config{}, func(st *Stream) {
		st.WriteHead(200, http.Header{"Content-Length": {strconv.Itoa(size)}})
		for n := 0; n < size; n += len(chunk) {
			if st.Write(chunk) != nil {
				return
			}
		}
		st.Finish(nil)
	}, new(fakeClock), &fl)
	resp, err := client().Get("http://" + s.addr + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{resp.Body}, make([]byte, 1024))
	if err != nil || got != size {
		t.Fatalf("read %d of %d: %v", got, size, err)
	}
	checkNoFlood(t, &fl)
}
