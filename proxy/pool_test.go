package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// closingOrigin answers one request per connection as if keeping it alive,
// then closes it: what an upstream does to a connection whose idle timeout
// passed. closed receives after each close.
func closingOrigin(t *testing.T) (addr string, conns *atomic.Int32, closed chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns, closed = new(atomic.Int32), make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer func() { c.Close(); closed <- struct{}{} }()
				tp := textproto.NewReader(bufio.NewReader(c))
				if _, err := tp.ReadLine(); err != nil {
					return
				}
				h, err := tp.ReadMIMEHeader()
				if err != nil {
					return
				}
				if n, _ := strconv.Atoi(h.Get("Content-Length")); n > 0 {
					buf := make([]byte, n)
					if _, err := tp.R.Read(buf); err != nil {
						return
					}
				}
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
			}()
		}
	}()
	return ln.Addr().String(), conns, closed
}

// TestIdleUpstreamCloseResent: a pooled connection the upstream closed is
// not an error for the client. A GET taken on it (no peek: it was used a
// moment ago) is sent again on a new connection without a retry budget; a
// POST, which could not be sent again, gets a connection checked first.
func TestIdleUpstreamCloseResent(t *testing.T) {
	addr, conns, closed := closingOrigin(t)
	p := startProxy(t, routerFor(t, &Peer{Addr: addr}), Config{Retries: -1}, ListenerConfig{Name: "http"})
	key := (&Peer{Addr: addr}).poolKey()
	c := h1Client()
	for i, method := range []string{"GET", "GET", "GET", "POST"} {
		req, _ := http.NewRequest(method, "http://"+p.addr+"/", strings.NewReader("body"))
		if method == "GET" {
			req.Body, req.ContentLength = nil, 0
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d (%s): %v", i, method, err)
		}
		b := make([]byte, 8)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b[:n]) != "ok" {
			t.Fatalf("request %d (%s): %d %q", i, method, resp.StatusCode, b[:n])
		}
		if method == "POST" {
			break
		}
		// The proxy pools the connection (it may finish reading the
		// response just after the client got it), and the origin closes it.
		waitFor(t, 10*time.Second, fmt.Sprintf("request %d (%s): the connection pooled", i, method), func() bool { return p.srv.pool.idleCount(key) == 1 })
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("origin did not close")
		}
	}
	// Every request after the first found the pooled connection closed:
	// each GET learned it by failing on it and was sent again on a new
	// connection; the POST learned it from the peek, which evicted it.
	m := p.srv.metrics
	reused, created, evicted := counterValue(m.connsReused), counterValue(m.connsCreated), counterValue(m.poolEvictions)
	if reused != 2 || created != 4 || evicted != 1 || conns.Load() != 4 {
		t.Fatalf("reused %v created %v evicted %v origin conns %d; want 2, 4, 1, 4", reused, created, evicted, conns.Load())
	}
}
