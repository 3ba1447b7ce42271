package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// deadAddr returns a loopback address that refuses connections. The port
// stays bound (without listening) until the test ends, so no listener the
// test opens later, the proxy's own included, can take it over.
func deadAddr(t testing.TB) string {
	_, port := boundSocket(t)
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// boundSocket returns a TCP socket bound to a free loopback port (closed
// when the test ends), and the port.
func boundSocket(t testing.TB) (fd, port int) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, sa.(*syscall.SockaddrInet4).Port
}

func TestDeadUpstream502(t *testing.T) {
	p := startProxy(t, routerFor(t, &Peer{Addr: deadAddr(t)}), Config{Retries: -1}, ListenerConfig{Name: "http", H2C: true})
	for name, c := range map[string]*http.Client{"h1": h1Client(), "h2c": h2cClient()} {
		resp, body := mustGet(t, c, "http://"+p.addr+"/")
		if resp.StatusCode != 502 || body != "502 Bad Gateway\n" {
			t.Fatalf("%s: %d %q", name, resp.StatusCode, body)
		}
		if strings.Contains(body, "127.0.0.1") || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("%s: error page leaks or lacks type: %q %v", name, body, resp.Header)
		}
	}
}

func TestSlowUpstream504(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	ca := newTestCA(t)
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	for _, mode := range []originMode{originH1, originH2C} {
		origin := startOrigin(t, mode, ca, slow)
		origin.Timeouts.ResponseHeader = 100 * time.Millisecond
		p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http"})
		start := time.Now()
		resp, body := mustGet(t, h1Client(), "http://"+p.addr+"/")
		if resp.StatusCode != 504 || body != "504 Gateway Timeout\n" {
			t.Fatalf("%v: %d %q", origin.Protocol, resp.StatusCode, body)
		}
		t.Logf("%v: 504 after %v", origin.Protocol, time.Since(start))
	}
}

func TestOversizedHeaders431(t *testing.T) {
	var hits atomic.Int32
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	cfg := Config{}
	cfg.Downstream.MaxHeaderBytes = 4096
	p := startProxy(t, routerFor(t, origin), cfg, ListenerConfig{Name: "http"})
	resp, _ := rawRequest(t, p.addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 5000)+"\r\n\r\n")
	if resp.StatusCode != 431 {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	if hits.Load() != 0 {
		t.Fatal("oversized request reached the upstream")
	}
}

func TestSlowlorisDisconnected(t *testing.T) {
	origin := startOrigin(t, originH1, nil, echoHandler())
	cfg := Config{}
	cfg.Downstream.HeaderTimeout = 200 * time.Millisecond
	p := startProxy(t, routerFor(t, origin), cfg, ListenerConfig{Name: "http"})
	for _, partial := range []string{"", "GET / HTTP/1.1\r\nHost: x\r\nX-A: "} {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		io.WriteString(c, partial)
		// Keep trickling a byte now and then: the deadline covers the whole head.
		go func() {
			for range 20 {
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond) // sleep-ok: the slow client under test
			}
		}()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		elapsed := time.Since(start)
		c.Close()
		// The client keeps writing, so the proxy's close may arrive as a
		// reset, which can also discard the 408 before it is read.
		reset := errors.Is(err, syscall.ECONNRESET)
		if err != nil && !reset {
			t.Fatalf("connection not closed by the proxy: %v", err)
		}
		if elapsed > 3*time.Second {
			t.Fatalf("closed after %v, want about the 200ms header timeout", elapsed)
		}
		if partial != "" && !reset && !strings.HasPrefix(string(b), "HTTP/1.1 408") {
			t.Fatalf("partial head answered %q, want 408", b)
		}
		t.Logf("partial %q closed after %v", partial, elapsed)
	}
}

// TestSmugglingRefused sends each request-smuggling shape and checks it is
// refused with 400 and never reaches the upstream.
func TestSmugglingRefused(t *testing.T) {
	var hits atomic.Int32
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
	}))
	p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http"})
	const smuggled = "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
	cases := []struct{ name, raw string }{
		{"CL.TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE.CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"},
		{"duplicate CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n" + smuggled},
		{"invalid CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\n" + smuggled},
		{"invalid chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"},
		{"bare LF", "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n"},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"},
		{"CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"},
		{"space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := rawRequest(t, p.addr, tc.raw)
			if resp.StatusCode != 400 {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			if !resp.Close {
				t.Fatal("connection kept open after a refused request")
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d smuggling attempts reached the upstream", n)
	}
}

func TestBodyLimit413(t *testing.T) {
	var hits atomic.Int32
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
	}))
	r := newTestRouter(t)
	tbl, err := r.Build([]UpstreamConfig{{Name: "up", Peers: []*Peer{origin}}},
		[]RouteConfig{{Host: "*", PathPrefix: "/small", Upstream: "up", MaxBodyBytes: 10}, {Host: "*", Upstream: "up"}}, "v1")
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(tbl)
	p := startProxy(t, RouterApp{Router: r}, Config{}, ListenerConfig{Name: "http"})
	resp, _ := rawRequest(t, p.addr, "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
	if resp.StatusCode != 413 {
		t.Fatalf("content-length over limit: %d", resp.StatusCode)
	}
	resp, _ = rawRequest(t, p.addr, "POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n")
	if resp.StatusCode != 413 {
		t.Fatalf("chunked over limit: %d", resp.StatusCode)
	}
	if hits.Load() != 0 {
		t.Fatal("oversize body reached the upstream")
	}
	resp, _ = rawRequest(t, p.addr, "POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
	if resp.StatusCode != 200 {
		t.Fatalf("other route: %d", resp.StatusCode)
	}
}

func TestMalformedUpstreamResponse502(t *testing.T) {
	addr := rawPeer(t, func(c net.Conn) {
		defer c.Close()
		http.ReadRequest(bufio.NewReader(c))
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx")
	})
	p := startProxy(t, routerFor(t, &Peer{Addr: addr}), Config{Retries: -1}, ListenerConfig{Name: "http"})
	resp, _ := mustGet(t, h1Client(), "http://"+p.addr+"/")
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
}

// TestClientGoneCancelsUpstream: a client that closes its connection while
// its request waits for the upstream makes the proxy abandon the upstream
// request (h1: the connection is cut; h2: RST_STREAM), as nginx does.
func TestClientGoneCancelsUpstream(t *testing.T) {
	for _, mode := range []originMode{originH1, originH2C} {
		entered, canceled := make(chan struct{}, 1), make(chan struct{}, 1)
		origin := startOrigin(t, mode, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			select {
			case <-r.Context().Done():
				canceled <- struct{}{}
			case <-time.After(30 * time.Second):
			}
		}))
		p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http"})
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: request never reached the upstream", mode)
		}
		c.Close()
		select {
		case <-canceled:
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: upstream request not abandoned after the client left", mode)
		}
	}
}

// TestPipelinedRequestNotLost: a second request pipelined behind a slow
// first one is answered after it (the client watch only peeks).
func TestPipelinedRequestNotLost(t *testing.T) {
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(100 * time.Millisecond) // sleep-ok: the second request arrives meanwhile
		}
		io.WriteString(w, r.URL.Path)
	}))
	p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http"})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"/slow", "/next"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
}

// TestEarlyResponseLingers: a response that ends the connection while the
// client is still sending (its upstream died mid-body, its head was too
// large) reaches the client whole, and the client's remaining bytes are
// taken, not answered with a reset (lingering close).
func TestEarlyResponseLingers(t *testing.T) {
	dying := rawPeer(t, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		io.ReadFull(c, buf) // take part of the body, then die
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{{Addr: dying}}})
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	// More than loopback's socket buffers can hold, so that the proxy
	// cannot have taken the whole body before its upstream died.
	const rest = 32 << 20
	for _, tc := range []struct {
		name string
		head string
		want int
	}{
		{"upstream died mid-body", fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", rest), 502},
		{"head too large", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			wrote := make(chan error, 1)
			go func() {
				_, err := io.WriteString(c, tc.head)
				if err == nil {
					_, err = c.Write(make([]byte, rest))
				}
				c.(*net.TCPConn).CloseWrite()
				wrote <- err
			}()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("response lost: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("response body lost: %v", err)
			}
			if resp.StatusCode != tc.want || !resp.Close {
				t.Fatalf("got %d close=%v %q, want %d with Connection: close", resp.StatusCode, resp.Close, body, tc.want)
			}
			if err := <-wrote; err != nil {
				t.Fatalf("the client's remaining bytes met a reset: %v", err)
			}
		})
	}
}

// TestLingerBounded: a client that keeps sending after its response is cut
// off after Downstream.LingerTimeout.
func TestLingerBounded(t *testing.T) {
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{namedOrigin(t, "a", nil)}})
	p := startProxy(t, app, Config{Downstream: DownstreamConfig{LingerTimeout: 100 * time.Millisecond}}, ListenerConfig{Name: "http"})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("x", 70<<10)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 431 {
		t.Fatalf("got %v %v, want 431", resp, err)
	}
	io.ReadAll(resp.Body)
	// Keep sending, never closing: the proxy must end the linger itself,
	// after which a write meets its reset.
	give := time.Now().Add(10 * time.Second)
	for time.Now().Before(give) {
		if _, err := c.Write([]byte("x")); err != nil {
			return
		}
		// Paced by the proxy's side: EOF (write side shut) or a short
		// read timeout.
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		br.ReadByte()
	}
	t.Fatal("the proxy lingered past LingerTimeout")
}

// TestEarlyResponseDrainBounded: an upstream that answers 413 before the
// request body was sent, to a client that goes on sending its body
// slowly, keeps the client's connection for Downstream.LingerTimeout at
// most, as every lingering close: the drain of the unread body ran under
// ReadIdleTimeout (a minute here) before.
func TestEarlyResponseDrainBounded(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
	app := routerWith(t, UpstreamConfig{Peers: []*Peer{{Addr: origin}}})
	cfg := Config{Downstream: DownstreamConfig{LingerTimeout: 100 * time.Millisecond, ReadIdleTimeout: time.Minute}}
	p := startProxy(t, app, cfg, ListenerConfig{Name: "http"})
	for _, head := range []string{
		"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nhello",
		"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\nhello",
	} {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		// The rest of the body trickles in until the proxy cuts the
		// connection (a write meets its reset) or the test gives up.
		give := time.Now().Add(10 * time.Second)
		cut := make(chan bool, 1) // one result
		go func() {
			for time.Now().Before(give) {
				if _, err := c.Write([]byte("x")); err != nil {
					cut <- true
					return
				}
				time.Sleep(10 * time.Millisecond) // sleep-ok: paces a slow client's body
			}
			cut <- false
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("%q: got %v %v, want the upstream's 413", head, resp, err)
		}
		if !<-cut {
			t.Fatalf("%q: the proxy kept the connection past LingerTimeout while the body trickled in", head)
		}
	}
}
