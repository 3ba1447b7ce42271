//go:build linux

package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// evOrigin is an HTTP/1.1 origin: "/small" answers with a
// Content-Length, "/chunked" with a chunked body, "/wait" once release is
// closed, after a value on arrived.
func evOrigin(t *testing.T, arrived, release chan struct{}) *Peer {
	return startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			io.WriteString(w, "part one,")
			w.(http.Flusher).Flush()
			io.WriteString(w, " part two")
		case "/wait":
			arrived <- struct{}{}
			<-release
			io.WriteString(w, "waited")
		default:
			w.Header().Set("X-Fwd-For", r.Header.Get("X-Forwarded-For"))
			io.WriteString(w, "small")
		}
	}))
}

// evProxy starts a proxy with an event-loop listener for app.
func evProxy(t *testing.T, app App[struct{}], cfg Config) *testProxy[struct{}] {
	return startProxy(t, app, cfg, ListenerConfig{Name: "loop", EventLoop: true})
}

// readResp reads one response from br.
func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// TestEventLoopKeepAlive: requests one after another and pipelined on one
// client connection are served by the loop itself (the connection is not
// handed to the goroutine path, which would track it), with the
// forwarding fields, over one reused upstream connection; chunked and
// HEAD responses keep their framing.
func TestEventLoopKeepAlive(t *testing.T) {
	peer := evOrigin(t, nil, nil)
	p := evProxy(t, routerFor(t, peer), Config{})
	nc := dialTCP(t, p.addr)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: proxy.test\r\n\r\n" }
	for i := 0; i < 3; i++ {
		io.WriteString(nc, get("/small"))
		resp, body := readResp(t, br, "GET")
		if resp.StatusCode != 200 || body != "small" || resp.Close || resp.Header.Get("X-Fwd-For") != "127.0.0.1" {
			t.Fatalf("request %d: %d %q close=%v %v", i, resp.StatusCode, body, resp.Close, resp.Header)
		}
	}
	io.WriteString(nc, get("/chunked"))
	if resp, body := readResp(t, br, "GET"); body != "part one, part two" || len(resp.TransferEncoding) != 1 {
		t.Fatalf("chunked: %q %v", body, resp.TransferEncoding)
	}
	io.WriteString(nc, "HEAD /small HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
	if resp, body := readResp(t, br, "HEAD"); resp.StatusCode != 200 || body != "" || resp.ContentLength != 5 {
		t.Fatalf("HEAD: %d %q %d", resp.StatusCode, body, resp.ContentLength)
	}
	io.WriteString(nc, get("/small")+get("/chunked")+get("/small"))
	for _, want := range []string{"small", "part one, part two", "small"} {
		if _, body := readResp(t, br, "GET"); body != want {
			t.Fatalf("pipelined: %q, want %q", body, want)
		}
	}
	if n := p.srv.ActiveConns(); n != 0 {
		t.Fatalf("%d connections handed to the goroutine path, want 0", n)
	}
	if got := counterValue(p.srv.metrics.connsCreated); got != 1 {
		t.Fatalf("%v upstream connections made, want 1", got)
	}
}

// TestEventLoopHandOff: a request the loop does not serve (a body) goes to
// the goroutine path with the bytes read, and is answered in full.
func TestEventLoopHandOff(t *testing.T) {
	rec := h1Recorder(t)
	p := evProxy(t, routerFor(t, rec.Peer), Config{})
	nc := dialTCP(t, p.addr)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	io.WriteString(nc, "GET /first HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
	readResp(t, br, "GET")
	io.WriteString(nc, "POST /form HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 5\r\n\r\nhello")
	if resp, body := readResp(t, br, "POST"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	_, seen := rec.take()
	if len(seen) != 2 || seen[1].Target != "/form" || seen[1].Body != "hello" {
		t.Fatalf("origin received %+v", seen)
	}
	if n := p.srv.ActiveConns(); n != 1 {
		t.Fatalf("%d connections on the goroutine path, want 1", n)
	}
}

// TestEventLoopUpstreamDies: an upstream that closes mid-body cuts the
// client's connection short of the declared length.
func TestEventLoopUpstreamDies(t *testing.T) {
	addr := rawPeer(t, func(c net.Conn) {
		defer c.Close()
		bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten!!")
	})
	p := evProxy(t, routerFor(t, &Peer{Addr: addr}), Config{})
	nc := dialTCP(t, p.addr)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil || string(b) != "only ten!!" {
		t.Fatalf("body %q, err %v: want the ten bytes then a cut", b, err)
	}
}

// TestEventLoopClientLeaves: a client that closes while its response
// streams makes the proxy close the upstream connection.
func TestEventLoopClientLeaves(t *testing.T) {
	upClosed := make(chan struct{})
	addr := rawPeer(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		br.ReadString('\n')
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nstart")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, br); err == nil {
			close(upClosed) // EOF: the proxy closed its side
		}
	})
	p := evProxy(t, routerFor(t, &Peer{Addr: addr}), Config{})
	nc := dialTCP(t, p.addr)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
	if _, err := bufio.NewReader(nc).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	select {
	case <-upClosed:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream connection stayed open after the client left")
	}
}

// TestEventLoopShutdown: Shutdown closes an idle keep-alive connection,
// lets a busy one finish with "Connection: close", and returns when both
// are done.
func TestEventLoopShutdown(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	peer := evOrigin(t, arrived, release)
	p := evProxy(t, routerFor(t, peer), Config{})
	released := false
	defer func() {
		if !released {
			close(release) // the origin's handler returns, its Close does not wait
		}
	}()
	idle := dialTCP(t, p.addr)
	idle.SetDeadline(time.Now().Add(10 * time.Second))
	ibr := bufio.NewReader(idle)
	io.WriteString(idle, "GET /small HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
	readResp(t, ibr, "GET")
	busy := dialTCP(t, p.addr)
	busy.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(busy, "GET /wait HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the busy request did not reach the origin")
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- p.srv.Shutdown(ctx)
	}()
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	close(release)
	released = true
	resp, body := readResp(t, bufio.NewReader(busy), "GET")
	if body != "waited" || !resp.Close {
		t.Fatalf("busy: %q close=%v", body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestEventLoopListenerChecked: an event-loop listener refuses TLS and h2c.
func TestEventLoopListenerChecked(t *testing.T) {
	srv, err := New[struct{}](routerFor(t, &Peer{Addr: "127.0.0.1:1"}), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Serve(ln, ListenerConfig{Name: "x", EventLoop: true, H2C: true})
	if err == nil || !strings.Contains(err.Error(), "cleartext HTTP/1.1 only") {
		t.Fatalf("Serve: %v", err)
	}
}
