package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startEndlessH1Origin reads a request head and then writes prefix and
// fill without end, 64 KiB a write, until a write fails (the proxy closed
// the connection) or 10 s pass; closed gets the bytes it wrote.
func startEndlessH1Origin(t *testing.T, prefix, fill string, closed chan<- int64) *Peer {
	chunk := []byte(strings.Repeat(fill, (64<<10)/len(fill)))
	addr := rawPeer(t, func(c net.Conn) {
		defer c.Close()
		var sent int64
		defer func() { closed <- sent }()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Write([]byte(prefix))
		for sent = int64(n); err == nil; sent += int64(n) {
			n, err = c.Write(chunk)
		}
	})
	return &Peer{Addr: addr}
}

// TestH1UpstreamEndlessHead: an HTTP/1.1 origin whose response head never
// ends (one endless field line, or endless short lines) gets the request
// 502 at once and its connection closed after at most the 256 KiB head
// allowance (and what the sockets hold); the response header timeout, a
// minute here, is not what ends it. It held before this test was written,
// but for endless interim (1xx) responses, each a small head of its own:
// the proxy read and dropped them until the response header timeout (a
// real node read 544 million 100 Continue heads, 13 GB, in its minute).
func TestH1UpstreamEndlessHead(t *testing.T) {
	for _, tc := range []struct{ name, prefix, fill string }{
		{"endless field line", "HTTP/1.1 200 OK\r\nX-Long: ", "a"},
		{"endless field lines", "HTTP/1.1 200 OK\r\n", "X-A: 1\r\n"},
		{"endless status line", "HTTP/1.1 200 ", "O"},
		{"endless 100 Continue", "", "HTTP/1.1 100 Continue\r\n\r\n"},
		{"endless 103 Early Hints", "", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			closed := make(chan int64, 1)
			origin := startEndlessH1Origin(t, tc.prefix, tc.fill, closed)
			cfg := Config{Retries: -1}
			cfg.Upstream.ResponseHeader = time.Minute
			p := startProxy(t, routerFor(t, origin), cfg, ListenerConfig{Name: "http"})
			if code, _ := getWithin(t, "http://"+p.addr+"/", 10*time.Second); code != 502 {
				t.Errorf("client got %d, want 502", code)
			}
			select {
			case sent := <-closed:
				t.Logf("origin sent %d bytes before the proxy closed the connection", sent)
				if sent > 64<<20 {
					t.Errorf("the origin got %d bytes of one head out", sent)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the proxy did not close the connection")
			}
		})
	}
}

// TestH1UpstreamBackpressure: a client that reads nothing of a large
// body from an HTTP/1.1 origin makes the proxy stop reading the origin:
// the origin's writes block (TCP's flow control does what HTTP/2's
// window does) after no more than the proxy's buffers and the sockets'.
// It held before this test was written.
func TestH1UpstreamBackpressure(t *testing.T) {
	for _, client := range []string{"h2c window 0", "h1 not reading"} {
		t.Run(client, func(t *testing.T) {
			var sent, writing atomic.Int64 // writing: when the write in progress began (UnixNano), or 0
			addr := rawPeer(t, func(c net.Conn) {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				c.SetWriteDeadline(time.Now().Add(30 * time.Second))
				chunk := bytes.Repeat([]byte("b"), 64<<10)
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n"))
				for {
					writing.Store(time.Now().UnixNano())
					n, err := c.Write(chunk)
					writing.Store(0)
					sent.Add(int64(n))
					if err != nil {
						return
					}
				}
			})
			p := startProxy(t, routerFor(t, &Peer{Addr: addr}), Config{Retries: -1}, ListenerConfig{Name: "http", H2C: true})
			if client == "h2c window 0" {
				dialSlowH2(t, p.addr).get(t, "/")
			} else {
				c, err := net.Dial("tcp", p.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
			}
			// The origin's write blocks for good: the proxy stopped reading.
			waitFor(t, 20*time.Second, "the origin's write to block", func() bool {
				w := writing.Load()
				return w != 0 && time.Since(time.Unix(0, w)) > 500*time.Millisecond
			})
			t.Logf("origin sent %d KiB before its write blocked", sent.Load()>>10)
			if n := sent.Load(); n > 64<<20 {
				t.Errorf("the origin got %d MiB out to a client that reads nothing", n>>20)
			}
		})
	}
}

// TestH1UpstreamHTTP10TransferEncoding: an HTTP/1.0 response with
// Transfer-Encoding (RFC 9112 6.1: faulty framing, even with a
// Content-Length, even with keep-alive) gets the request 502 and its
// upstream connection closed, never pooled. Before, it was read until the
// upstream closed and its chunk framing served as the content.
func TestH1UpstreamHTTP10TransferEncoding(t *testing.T) {
	for _, head := range []string{
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	} {
		closed := make(chan error, 4)
		var served atomic.Int32
		addr := rawPeer(t, func(c net.Conn) {
			defer c.Close()
			br := bufio.NewReader(c)
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			served.Add(1)
			c.Write([]byte(head))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := br.ReadByte() // the proxy's close, or another request on a pooled connection
			closed <- err
		})
		p := startProxy(t, routerWith(t, UpstreamConfig{Peers: []*Peer{{Addr: addr}}}), Config{}, ListenerConfig{Name: "http"})
		resp, body := mustGet(t, h1Client(), "http://"+p.addr+"/")
		if resp.StatusCode != 502 || strings.Contains(body, "hello") {
			t.Fatalf("%q: %d %q, want 502", head, resp.StatusCode, body)
		}
		if n := served.Load(); n < 1 {
			t.Fatalf("%q: the origin saw no request", head)
		}
		for range served.Load() {
			if err := <-closed; err == nil || isTimeoutErr(err) {
				t.Fatalf("%q: upstream connection not closed by the proxy: %v", head, err)
			}
		}
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
