package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/internal/hostile"
)

// rawRequest sends raw bytes to addr and returns the raw response head and
// body read until the proxy closes or a full response arrived.
func rawRequest(t testing.TB, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return rawExchange(t, c, raw)
}

// rawExchange sends raw bytes on c and reads one response.
func rawExchange(t testing.TB, c net.Conn, raw string) (*http.Response, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestHopByHopRemoved(t *testing.T) {
	seen := make(chan http.Header, 1)
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-End", "kept")
		io.WriteString(w, "ok")
	}))
	p := startProxy(t, routerFor(t, origin), Config{Via: "pingora-go"}, ListenerConfig{Name: "http"})
	resp, body := rawRequest(t, p.addr, "GET / HTTP/1.1\r\nHost: example.com\r\n"+
		"Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: 300\r\nProxy-Authorization: Basic Zm9v\r\n"+
		"Proxy-Connection: keep-alive\r\nTE: trailers, deflate\r\nUpgrade: h2c\r\nX-End: kept\r\n"+
		"X-Forwarded-For: 203.0.113.9\r\n\r\n")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	h := <-seen
	for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Upgrade"} {
		if v := h.Get(k); v != "" {
			t.Errorf("origin received hop-by-hop %s: %q", k, v)
		}
	}
	if got := h.Get("Te"); got != "trailers" {
		t.Errorf("TE = %q, want trailers", got)
	}
	if got := h.Get("X-End"); got != "kept" {
		t.Errorf("end-to-end header lost: %q", got)
	}
	if got := h.Get("X-Forwarded-For"); got != "127.0.0.1" { // the client is not trusted: its own is dropped
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := h.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if got := h.Get("X-Forwarded-Host"); got != "example.com" {
		t.Errorf("X-Forwarded-Host = %q", got)
	}
	if got := h.Get("Via"); got != "1.1 pingora-go" {
		t.Errorf("request Via = %q", got)
	}
	for _, k := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("client received hop-by-hop %s: %q", k, v)
		}
	}
	if resp.Header.Get("X-End") != "kept" || resp.Header.Get("Via") != "2 pingora-go" && resp.Header.Get("Via") != "1.1 pingora-go" {
		t.Errorf("response headers: %v", resp.Header)
	}
}

func TestTrailersPassThrough(t *testing.T) {
	ca := newTestCA(t)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("X-Req-Trailer", "")
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		w.Header().Set("X-Checksum", "abc123")
		w.Header().Set(http.TrailerPrefix+"X-Echo-Trailer", r.Trailer.Get("X-Req-T"))
	})
	for _, mode := range []originMode{originH1, originH2C} {
		origin := startOrigin(t, mode, ca, handler)
		p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http", H2C: true})
		for cname, c := range map[string]*http.Client{"h1": h1Client(), "h2c": h2cClient()} {
			t.Run(fmt.Sprintf("%s->%s", cname, origin.Protocol), func(t *testing.T) {
				req, _ := http.NewRequest("POST", "http://"+p.addr+"/", io.NopCloser(strings.NewReader("up")))
				req.ContentLength = -1
				req.Trailer = http.Header{"X-Req-T": {"from-client"}}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "body" {
					t.Fatalf("body %q", b)
				}
				if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
					t.Fatalf("response trailer X-Checksum = %q (trailer %v)", got, resp.Trailer)
				}
				if got := resp.Trailer.Get("X-Echo-Trailer"); got != "from-client" {
					t.Fatalf("request trailer not passed: %q", got)
				}
			})
		}
	}
}

func TestHeadAnd204And304(t *testing.T) {
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	}))
	p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http"})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// Three requests on one connection: a body where there should be none
	// would corrupt the framing of the next.
	for _, tc := range []struct{ method, path string }{{"HEAD", "/"}, {"GET", "/204"}, {"GET", "/304"}, {"GET", "/"}} {
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", tc.method, tc.path)
		req, _ := http.NewRequest(tc.method, "/", nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tc.method == "GET" && tc.path == "/" && string(b) != "hello" {
			t.Fatalf("GET body %q", b)
		}
		if tc.method == "HEAD" && resp.ContentLength != 5 {
			t.Fatalf("HEAD Content-Length %d", resp.ContentLength)
		}
	}
}

func TestExpectContinue(t *testing.T) {
	origin := startOrigin(t, originH1, nil, echoHandler())
	p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http"})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	postExpectContinue(t, c, bufio.NewReader(c))
}

// postExpectContinue sends a POST with "Expect: 100-continue" on c (read
// through br), waits for the interim response before it sends the body,
// and checks the echoed answer.
func postExpectContinue(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("want 100 Continue, got %q %v", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, "data")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "POST /up data" {
		t.Fatalf("body %q", b)
	}
}

// TestWriteAfterIdle: the write idle deadline of an earlier response has
// passed by the time a keep-alive connection's next request comes; the
// next response, and a "100 Continue", must not fail on that stale
// deadline.
func TestWriteAfterIdle(t *testing.T) {
	origin := startOrigin(t, originH1, nil, echoHandler())
	var cfg Config
	cfg.Downstream.WriteIdleTimeout = 50 * time.Millisecond
	p := startProxy(t, routerFor(t, origin), cfg, ListenerConfig{Name: "http"})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	get := func(req, want string) {
		t.Helper()
		io.WriteString(c, req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("%d %q %v, want 200 %q", resp.StatusCode, b, err, want)
		}
	}
	idle := func() {
		// Waiting out a deadline takes time passing: four times the
		// timeout, so the deadline set by the last response has fired.
		time.Sleep(4 * cfg.Downstream.WriteIdleTimeout)
	}
	get("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a ")
	idle()
	get("GET /b HTTP/1.1\r\nHost: x\r\n\r\n", "GET /b ")
	idle()
	postExpectContinue(t, c, br)
}

// TestH2WriteAfterIdle: the same over HTTP/2 (h2c), with a response larger
// than the connection's write buffer, so frames reach the socket from a
// buffer that fills, not only from a flush.
func TestH2WriteAfterIdle(t *testing.T) {
	body := strings.Repeat("x", 256<<10)
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	var cfg Config
	cfg.Downstream.WriteIdleTimeout = 50 * time.Millisecond
	p := startProxy(t, routerFor(t, origin), cfg, ListenerConfig{Name: "http", H2C: true})
	c := h2cClient()
	for i := 0; i < 3; i++ {
		if i > 0 {
			time.Sleep(4 * cfg.Downstream.WriteIdleTimeout) // the last deadline fires
		}
		resp, got := mustGet(t, c, "http://"+p.addr+"/")
		if resp.ProtoMajor != 2 || got != body {
			t.Fatalf("request %d: HTTP/%d, %d bytes, want HTTP/2 and %d", i, resp.ProtoMajor, len(got), len(body))
		}
	}
}

// TestConnectRefused: CONNECT is answered 405 with Allow, over HTTP/1.1
// (and the connection closes: tunnel bytes may follow) and HTTP/2, and
// never reaches the upstream, where a forward proxy could have answered
// 2xx and turned a pooled connection into a tunnel for the next client.
func TestConnectRefused(t *testing.T) {
	var hits atomic.Int32
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(200)
	}))
	p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http", H2C: true})
	c := dialTCP(t, p.addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 405 || resp.Header.Get("Allow") == "" || !resp.Close {
		t.Fatalf("HTTP/1.1: %d, Allow %q, close %v; want 405, Allow, close", resp.StatusCode, resp.Header.Get("Allow"), resp.Close)
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 && !bytes.Contains(rest, []byte("405")) {
		t.Fatalf("after the 405: %q", rest)
	}
	h2, err := hostile.NewH2Conn(dialTCP(t, p.addr), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := h2.Send(hostile.Fields(":method", "CONNECT", ":authority", "origin.test:443"), false)
	if o, err := h2.Await(id); err != nil || o.Status != "405" {
		t.Fatalf("HTTP/2: %v %v, want 405", o, err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the origin got %d requests", n)
	}
}
