package proxy

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// BenchmarkProxyH2CUpstreamDownload measures one fast client's download
// of a 100 MiB body from an HTTP/2 (h2c) origin through the proxy: the
// upstream stream's receive window must not slow it.
func BenchmarkProxyH2CUpstreamDownload(b *testing.B) {
	const size = 100 << 20
	origin := startOrigin(b, originH2C, nil, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		io.Copy(w, &patternReader{n: size})
	}))
	p := startProxy(b, routerFor(b, origin), Config{}, ListenerConfig{Name: "http"})
	c := h1Client()
	url := "http://" + p.addr + "/big"
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n != size {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
}

// creditOrigin is a raw h2c origin that answers every stream with a
// head declaring a body of size bytes and then sends DATA as fast as the
// proxy's flow-control windows allow, all from the connection's reader
// goroutine, so it tracks exactly the credit the proxy gave it.
type creditOrigin struct {
	peer *Peer
	size int64

	mu         sync.Mutex
	initWindow int64            // the proxy's SETTINGS_INITIAL_WINDOW_SIZE
	connWindow int64            // the largest connection window the proxy opened at first
	sent       map[string]int64 // bytes sent, by connection and stream
}

func startCreditOrigin(t testing.TB, size int64) *creditOrigin {
	o := &creditOrigin{size: size, sent: map[string]int64{}}
	addr := rawPeer(t, o.serve)
	o.peer = &Peer{Addr: addr, Protocol: H2C}
	return o
}

type creditStream struct {
	id             uint32
	credit, remain int64
}

func (o *creditOrigin) serve(c net.Conn) {
	defer c.Close()
	fr := acceptH2(c)
	if fr == nil {
		return
	}
	conn := c.RemoteAddr().String()
	init, connCredit := int64(65535), int64(65535)
	opened := false // the connection's first WINDOW_UPDATE came
	streams := map[uint32]*creditStream{}
	chunk := make([]byte, 16384)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				break
			}
			if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
				for _, s := range streams {
					s.credit += int64(v) - init
				}
				init = int64(v)
				o.mu.Lock()
				o.initWindow = init
				o.mu.Unlock()
			}
			fr.WriteSettingsAck()
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				connCredit += int64(f.Increment)
				if !opened {
					opened = true
					o.mu.Lock()
					o.connWindow = max(o.connWindow, int64(f.Increment))
					o.mu.Unlock()
				}
			} else if s := streams[f.StreamID]; s != nil {
				s.credit += int64(f.Increment)
			}
		case *http2.RSTStreamFrame:
			delete(streams, f.StreamID)
		case *http2.MetaHeadersFrame:
			streams[f.StreamID] = &creditStream{id: f.StreamID, credit: init, remain: o.size}
			writeBlock(fr, f.StreamID, hpackBlock(":status", "200", "content-length", strconv.FormatInt(o.size, 10)), false)
		}
		for _, s := range streams {
			for s.remain > 0 && s.credit > 0 && connCredit > 0 {
				n := min(int64(len(chunk)), s.credit, connCredit, s.remain)
				if fr.WriteData(s.id, n == s.remain, chunk[:n]) != nil {
					return
				}
				s.credit, connCredit, s.remain = s.credit-n, connCredit-n, s.remain-n
				o.mu.Lock()
				o.sent[conn+"/"+strconv.Itoa(int(s.id))] += n
				o.mu.Unlock()
			}
		}
	}
}

// stats returns the bytes sent on each stream.
func (o *creditOrigin) stats() (perStream []int64, initWindow int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range o.sent {
		perStream = append(perStream, n)
	}
	return perStream, o.initWindow
}

// connWindowGranted returns the connection window the proxy opened with
// its first WINDOW_UPDATE (beyond the initial 65,535 bytes), the largest
// over the origin's connections.
func (o *creditOrigin) connWindowGranted() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.connWindow
}

// TestH2UpstreamStreamBufferBounded: clients that open many streams to a
// large-body HTTP/2 origin and read nothing make the proxy hold at most
// maxUpstreamStreamWindow of each body (the transport's receive buffer)
// and what its own copy holds: the origin gets no more credit until the
// client drains, and the connection's window is maxUpstreamConnWindow.
// The transport's default windows were 4 MiB a stream and 1 GiB a
// connection: 24 streams held 96 MiB (before the fix this test fails,
// each stream having been sent 4 MiB).
func TestH2UpstreamStreamBufferBounded(t *testing.T) {
	const clients, perClient = 2, 12
	o := startCreditOrigin(t, 1<<30)
	p := startProxy(t, routerFor(t, o.peer), Config{Retries: -1}, ListenerConfig{Name: "h2c", H2C: true})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for range clients {
		c := dialSlowH2(t, p.addr)
		for range perClient {
			c.get(t, "/")
		}
	}
	waitFor(t, 20*time.Second, "every stream sent its initial window", func() bool {
		sent, init := o.stats()
		if len(sent) < clients*perClient || init == 0 {
			return false
		}
		for _, n := range sent {
			if n < init {
				return false
			}
		}
		return true
	})
	sent, init := o.stats()
	if cw := o.connWindowGranted(); cw > maxUpstreamConnWindow {
		t.Errorf("the connection's window was opened to %d MiB, the cap is %d MiB", cw>>20, maxUpstreamConnWindow>>20)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	var total int64
	for _, n := range sent {
		total += n
	}
	t.Logf("%d streams: initial window %d KiB; origin sent %d MiB; live heap %+d MiB",
		len(sent), init>>10, total>>20, (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>20)
	// The proxy's own copy reads a little of each body before it
	// finds the client's window shut; the transport grants that back.
	const copySlack = 256 << 10
	for _, n := range sent {
		if n > maxUpstreamStreamWindow+copySlack {
			t.Fatalf("a stream the client does not read was sent %d KiB; the cap is %d KiB and the copy's %d KiB",
				n>>10, maxUpstreamStreamWindow>>10, copySlack>>10)
		}
	}
}
