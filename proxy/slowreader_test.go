package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// slowH2 is a raw HTTP/2 client that never reads a response body: its
// streams' initial flow-control window is 0 and it sends no
// WINDOW_UPDATE, so the proxy cannot send it one byte of any body (the
// heads it gets: they are not flow-controlled). It is the attack that
// made the proxy hold one upstream connection per stream.
type slowH2 struct {
	nc   net.Conn
	fr   *http2.Framer
	wmu  sync.Mutex // guards fr's writes, enc, hbuf and next
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	next uint32

	mu   sync.Mutex
	ends int // streams seen to end: END_STREAM or RST_STREAM
	done chan struct{}

	data atomic.Int64 // DATA payload bytes received, all streams
	rsts sync.Map     // stream ID -> the RST_STREAM code it got
}

func dialSlowH2(t *testing.T, addr string) *slowH2 {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &slowH2{nc: nc, fr: http2.NewFramer(nc, nc), next: 1, done: make(chan struct{})}
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	go c.readLoop()
	t.Cleanup(func() {
		nc.Close()
		<-c.done
	})
	return c
}

// readLoop acknowledges SETTINGS and PING and counts the streams that
// end.
func (c *slowH2) readLoop() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				c.write(func() error { return c.fr.WritePing(true, data) })
			}
		case *http2.MetaHeadersFrame, *http2.DataFrame, *http2.RSTStreamFrame:
			switch f := f.(type) {
			case *http2.DataFrame:
				c.data.Add(int64(len(f.Data())))
			case *http2.RSTStreamFrame:
				c.rsts.Store(f.StreamID, f.ErrCode)
			}
			if _, rst := f.(*http2.RSTStreamFrame); rst || f.Header().Flags.Has(http2.FlagDataEndStream) {
				c.mu.Lock()
				c.ends++
				c.mu.Unlock()
			}
		}
	}
}

func (c *slowH2) write(f func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return f()
}

// get opens a GET stream for path.
func (c *slowH2) get(t *testing.T, path string) {
	t.Helper()
	err := c.write(func() error {
		c.hbuf.Reset()
		for _, h := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", path}, {":authority", "proxy.test"}} {
			c.enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
		}
		id := c.next
		c.next += 2
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (c *slowH2) endsSeen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ends
}

// connCounter counts an origin's connections: accepted, and the most
// open at once.
type connCounter struct {
	mu       sync.Mutex
	open     int
	peak     int
	accepted int
}

func (o *connCounter) connState(_ net.Conn, st http.ConnState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch st {
	case http.StateNew:
		o.open++
		o.accepted++
		o.peak = max(o.peak, o.open)
	case http.StateClosed, http.StateHijacked:
		o.open--
	}
}

func (o *connCounter) counts() (accepted, peak int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.accepted, o.peak
}

// sizedOrigin serves fixed bodies and counts requests and connections.
type sizedOrigin struct {
	connCounter
	peer   *Peer
	served atomic.Int64
}

// startSizedOrigin serves h over HTTP/1.1 (and h2c when h2c) and
// counts what it sees.
func startSizedOrigin(t *testing.T, h2c bool, h http.Handler) *sizedOrigin {
	o := &sizedOrigin{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.served.Add(1)
		h.ServeHTTP(w, r)
	}))
	srv.Config.ConnState = o.connState
	o.peer = &Peer{Addr: srv.Listener.Addr().String()}
	if h2c {
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		o.peer.Protocol = H2C
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return o
}

// rawChunkedOrigin answers every request with one write of a chunked
// response of n data bytes in chunks of 512: head, body and last chunk
// arrive together, as a small chunked answer does.
func rawChunkedOrigin(t *testing.T, n int) *sizedOrigin {
	o := &sizedOrigin{}
	var resp bytes.Buffer
	resp.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
	for left := n; left > 0; {
		k := min(512, left)
		fmt.Fprintf(&resp, "%x\r\n%s\r\n", k, strings.Repeat("c", k))
		left -= k
	}
	resp.WriteString("0\r\n\r\n")
	addr := rawPeer(t, func(c net.Conn) {
		o.connState(c, http.StateNew)
		defer o.connState(c, http.StateClosed)
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			req.Body.Close()
			o.served.Add(1)
			if _, err := c.Write(resp.Bytes()); err != nil {
				return
			}
		}
	})
	o.peer = &Peer{Addr: addr}
	return o
}

func bodyHandler(n int) http.Handler {
	body := bytes.Repeat([]byte("b"), n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(n))
		w.Write(body)
	})
}

// TestSlowReaderSmallBodiesReleaseUpstream reproduces the slow-reader
// attack with small responses: an HTTP/2 client opens stream after stream
// with its window at 0. Each response (up to 64 KiB) is read whole from
// the upstream and its connection goes back to the pool before the proxy
// blocks on the client, so every stream reuses the one upstream
// connection, and the peer's in-use count (ConnLimit) drops to 0 each
// time. Before, each stream held its upstream connection until the stream
// timed out: one connection per stream.
func TestSlowReaderSmallBodiesReleaseUpstream(t *testing.T) {
	const streams = 40
	for _, tc := range []struct {
		name   string
		origin func(t *testing.T) *sizedOrigin
	}{
		// 40 KiB: more than the 16 KiB read buffer the head is read into,
		// so the first body read does not end the body.
		{"h1 content-length 40KiB", func(t *testing.T) *sizedOrigin {
			return startSizedOrigin(t, false, bodyHandler(40<<10))
		}},
		{"h1 content-length 64KiB", func(t *testing.T) *sizedOrigin {
			return startSizedOrigin(t, false, bodyHandler(64<<10))
		}},
		{"h1 chunked 6KiB", func(t *testing.T) *sizedOrigin { return rawChunkedOrigin(t, 6<<10) }},
		{"h2c content-length 40KiB", func(t *testing.T) *sizedOrigin {
			return startSizedOrigin(t, true, bodyHandler(40<<10))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.origin(t)
			o.peer.Conns = ConnLimit{Max: 2 * streams} // never reached: it only counts
			p := startProxy(t, routerFor(t, o.peer), Config{}, ListenerConfig{Name: "h2c", H2C: true})
			c := dialSlowH2(t, p.addr)
			key := o.peer.poolKey()
			for i := 1; i <= streams; i++ {
				c.get(t, "/")
				waitFor(t, 5*time.Second, fmt.Sprintf("stream %d answered by the origin and its upstream connection released", i), func() bool {
					return o.served.Load() == int64(i) && p.srv.slots.active(key) == 0
				})
			}
			if accepted, _ := o.counts(); accepted != 1 {
				t.Errorf("the origin accepted %d connections for %d streams, want 1 (reused)", accepted, streams)
			}
			if n := c.endsSeen(); n != 0 {
				t.Fatalf("%d streams ended with the client's window shut: the test does not hold the streams", n)
			}
		})
	}
}

// TestSlowReaderLargeBodiesCapped: responses too large to hold (1 MiB)
// keep their upstream connection while the client does not read, so the
// slow reader's streams are bounded by the peer's max_conns instead: the
// origin never sees more than Max connections, and the streams over the
// cap are refused (503) rather than given a connection each.
func TestSlowReaderLargeBodiesCapped(t *testing.T) {
	const streams, maxConns = 40, 4
	o := startSizedOrigin(t, false, bodyHandler(1<<20))
	o.peer.Conns = ConnLimit{Max: maxConns, Queue: -1}
	p := startProxy(t, routerFor(t, o.peer), Config{Retries: -1}, ListenerConfig{Name: "h2c", H2C: true})
	c := dialSlowH2(t, p.addr)
	for range streams {
		c.get(t, "/")
	}
	waitFor(t, 10*time.Second, "every stream served or refused", func() bool {
		return o.served.Load() == maxConns && counterValue(p.srv.slots.refused) == streams-maxConns
	})
	if n := p.srv.slots.active(o.peer.poolKey()); n != maxConns {
		t.Errorf("%d connections in use, want %d (held by the streams the client does not read)", n, maxConns)
	}
	if accepted, peak := o.counts(); accepted > maxConns || peak > maxConns {
		t.Errorf("origin accepted %d connections, %d at once; the cap is %d", accepted, peak, maxConns)
	}
}

// TestReadingClientGetsPiecesAsTheyCome: the read-ahead that lets a
// blocked client's upstream go is for blocked clients only. A client that
// reads gets the first piece of a small body framed by Content-Length
// while the upstream still holds back the rest, over both client
// protocols and both upstream protocols.
func TestReadingClientGetsPiecesAsTheyCome(t *testing.T) {
	for _, mode := range []originMode{originH1, originH2C} {
		release := make(chan struct{})
		origin := startOrigin(t, mode, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "01234")
			w.(http.Flusher).Flush()
			<-release
			io.WriteString(w, "56789")
		}))
		p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http", H2C: true})
		// First of all: the proxy's shutdown waits for the relays, and the
		// origin's Close for its handlers.
		t.Cleanup(func() { close(release) })
		for _, name := range []string{"h1", "h2c"} {
			c := h1Client()
			if name == "h2c" {
				c = h2cClient()
			}
			resp, err := c.Get("http://" + p.addr + "/")
			if err != nil {
				t.Fatalf("%v/%s: %v", origin.Protocol, name, err)
			}
			first := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "01234" {
				t.Fatalf("%v/%s: first piece %q %v", origin.Protocol, name, first, err)
			}
			resp.Body.Close()
		}
	}
}

// TestStuckStreamWriteTimesOut: a stream whose response write waits on a
// flow-control window the client never opens ends after the downstream
// WriteIdleTimeout, as an HTTP/1.1 client that stops reading does, and
// lets its upstream connection (and its max_conns slot) go. It was bounded
// by TunnelIdleTimeout, an hour by default.
func TestStuckStreamWriteTimesOut(t *testing.T) {
	o := startSizedOrigin(t, false, bodyHandler(1<<20))
	o.peer.Conns = ConnLimit{Max: 1, Queue: -1}
	var cfg Config
	cfg.Retries = -1
	cfg.Downstream.WriteIdleTimeout = 200 * time.Millisecond
	p := startProxy(t, routerFor(t, o.peer), cfg, ListenerConfig{Name: "h2c", H2C: true})
	c := dialSlowH2(t, p.addr)
	c.get(t, "/")
	waitFor(t, 10*time.Second, "the stream to take the peer's one connection", func() bool {
		return o.served.Load() == 1
	})
	waitFor(t, 10*time.Second, "the stuck stream to let its connection go", func() bool {
		return p.srv.slots.active(o.peer.poolKey()) == 0
	})
	resp, err := http.Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n != 1<<20 {
		t.Fatalf("next request: status %d, %d bytes; want 200 and the whole body", resp.StatusCode, n)
	}
}
