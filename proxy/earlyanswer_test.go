package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// earlyAnswerCfg: a client's body read waits a minute; a lingering close
// lasts 100ms. The tests' deadlines (a few seconds) are guards between
// the two, not measures.
var earlyAnswerCfg = Config{Downstream: DownstreamConfig{
	ReadIdleTimeout:   time.Minute,
	TunnelIdleTimeout: time.Minute, // an HTTP/2 stream's body wait is the longer of the two
	LingerTimeout:     100 * time.Millisecond,
}}

// answerHeadOnly is an HTTP/1.1 origin that sends resp once it has read
// a request's head, reads no body, and waits for the proxy to close.
func answerHeadOnly(t *testing.T, resp string) string {
	return rawPeer(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
		}
		io.WriteString(c, resp)
		io.Copy(io.Discard, br) // until the proxy closes: no body comes
	})
}

// earlyAnswerOrigins answer 413 to a request's head without reading its
// body: over HTTP/1.1 (then waiting for the proxy to close) and h2c.
func earlyAnswerOrigins(t *testing.T) map[string]*Peer {
	h1 := answerHeadOnly(t, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!")
	h2 := startOrigin(t, originH2C, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "4")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, "big!")
	}))
	return map[string]*Peer{"h1 upstream": {Addr: h1}, "h2c upstream": h2}
}

// TestEarlyAnswerStalledClient: an upstream answers 413 before it read the
// request body, and the client has stopped sending its body (it holds the
// connection open). The 413 reaches the client at once, not when the
// client's body read times out (ReadIdleTimeout: it came 8s late with 8s),
// and the connection then closes after the lingering close, the unread
// body never having come.
func TestEarlyAnswerStalledClient(t *testing.T) {
	for name, peer := range earlyAnswerOrigins(t) {
		p := startProxy(t, routerFor(t, peer), earlyAnswerCfg, ListenerConfig{Name: "http"})
		for _, tc := range []struct{ name, body string }{
			{"length", "Content-Length: 100000\r\n\r\nhello"},
			{"chunked", "Transfer-Encoding: chunked\r\n\r\n100000\r\nhello"},
			{"chunk size line", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10"},
		} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				c, err := net.Dial("tcp", p.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second)) // a guard, well under ReadIdleTimeout
				if _, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\n"+tc.body); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("no early answer before the guard: %v", err)
				}
				got, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || string(got) != "big!" {
					t.Fatalf("got %d %q %v, want the upstream's 413", resp.StatusCode, got, err)
				}
				// The rest of the body never comes: the proxy closes after
				// LingerTimeout rather than wait for it.
				if b, err := br.ReadByte(); err == nil || isTimeout(err) {
					t.Fatalf("connection still open after the linger (read %q, %v)", b, err)
				}
			})
		}
	}
}

// TestEarlyAnswerKeepAlive: a client whose body arrives whole after the
// upstream's early 413 keeps its connection (the proxy discards the rest of
// the body within LingerTimeout: the body read that was woken lost
// nothing, over TLS too) and its next request is served on it.
func TestEarlyAnswerKeepAlive(t *testing.T) {
	ca := newTestCA(t)
	certs, err := NewCertStoreFromCerts([]tls.Certificate{ca.issue(t, "proxy.test")})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{RootCAs: ca.pool, ServerName: "proxy.test", NextProtos: []string{"http/1.1"}}
	for name, peer := range earlyAnswerOrigins(t) {
		cfg := earlyAnswerCfg
		cfg.Downstream.LingerTimeout = 5 * time.Second // a guard: the body comes at once
		plain := startProxy(t, routerFor(t, peer), cfg, ListenerConfig{Name: "http"})
		secure := startProxy(t, routerFor(t, peer), cfg, ListenerConfig{Name: "tls", TLS: certs})
		dials := map[string]func() (net.Conn, error){
			"tcp": func() (net.Conn, error) { return net.Dial("tcp", plain.addr) },
			"tls": func() (net.Conn, error) { return tls.Dial("tcp", secure.addr, tlsCfg) },
		}
		for _, tc := range []struct{ name, head, rest string }{
			{"length", "Content-Length: 10\r\n\r\nhello", "world"},
			{"chunked", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "5\r\nworld\r\n0\r\n\r\n"},
			{"chunk size line", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5", "\r\nworld\r\n0\r\n\r\n"},
		} {
			for lname, dial := range dials {
				t.Run(name+"/"+lname+"/"+tc.name, func(t *testing.T) {
					c, err := dial()
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					earlyAnswerTwice(t, c, tc.head, tc.rest)
				})
			}
		}
	}
}

// earlyAnswerTwice sends a request with head, and once its 413 came the
// rest of its body and a second request; both must be answered 413 on
// the kept connection.
func earlyAnswerTwice(t *testing.T, c net.Conn, head, rest string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\n"+head); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Close {
			t.Fatalf("request %d: got %d close=%v, want 413 on a kept connection", i, resp.StatusCode, resp.Close)
		}
		if i == 0 { // only now the rest of the body, and a second request
			fmt.Fprintf(c, "%sPOST /again HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", rest)
		}
	}
}

// TestEarlyAnswerStalledH2Client: the same over HTTP/2: the stream gets the
// 413 at once though the client's DATA stopped, and the stream ends.
func TestEarlyAnswerStalledH2Client(t *testing.T) {
	for name, peer := range earlyAnswerOrigins(t) {
		t.Run(name, func(t *testing.T) {
			p := startProxy(t, routerFor(t, peer), earlyAnswerCfg, ListenerConfig{Name: "http", H2C: true})
			pr, pw := io.Pipe()
			defer pw.Close()
			go io.WriteString(pw, "hello") // then nothing, the stream left open
			req, _ := http.NewRequest(http.MethodPost, "http://"+p.addr+"/upload", pr)
			req.ContentLength = 100000
			cl := h2cClient()
			cl.Timeout = 5 * time.Second // a guard, well under the stream's body wait
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatalf("no early answer before the guard: %v", err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || string(got) != "big!" {
				t.Fatalf("got %d %q %v, want the upstream's 413", resp.StatusCode, got, err)
			}
			// The connection serves on.
			resp, err = cl.Post("http://"+p.addr+"/again", "text/plain", strings.NewReader("hi"))
			if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("next request: %v %v", resp, err)
			}
			resp.Body.Close()
		})
	}
}

// TestEarlyAnswerRetryResumesBody: an upstream that answers 503 early, to
// be retried, while the client has paused its body: the retry goes to the
// next peer at once, replays what was read, and the body then reads on
// from the client where it stopped (the read that was woken lost
// nothing).
func TestEarlyAnswerRetryResumesBody(t *testing.T) {
	busyH1 := answerHeadOnly(t, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	busyH2 := startOrigin(t, originH2C, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	entered := make(chan struct{}, 1)
	good := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	for name, busy := range map[string]*Peer{"h1 upstream": {Addr: busyH1}, "h2c upstream": busyH2} {
		for _, tc := range []struct{ name, head, rest string }{
			{"length", "Content-Length: 10\r\n\r\nhello", "world"},
			{"chunked", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5", "\r\nworld\r\n0\r\n\r\n"},
		} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				app := routerWith(t, UpstreamConfig{Peers: []*Peer{busy, good}, RetryOnStatus: []int{503}})
				p := startProxy(t, app, earlyAnswerCfg, ListenerConfig{Name: "http"})
				c, err := net.Dial("tcp", p.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second)) // a guard, well under ReadIdleTimeout
				if _, err := io.WriteString(c, "PUT /upload HTTP/1.1\r\nHost: a\r\n"+tc.head); err != nil {
					t.Fatal(err)
				}
				select {
				case <-entered:
				case <-time.After(5 * time.Second):
					t.Fatal("the retry waited for the client's body")
				}
				io.WriteString(c, tc.rest)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(got) != "helloworld" {
					t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, got, "helloworld")
				}
			})
		}
		// A POST whose body streams cannot be sent again: the 503 is
		// passed on, at once, and the connection ends after the linger.
		t.Run(name+"/not replayable", func(t *testing.T) {
			app := routerWith(t, UpstreamConfig{Peers: []*Peer{busy, good}, RetryOnStatus: []int{503}})
			p := startProxy(t, app, earlyAnswerCfg, ListenerConfig{Name: "http"})
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("got %v %v, want the upstream's 503 before the guard", resp, err)
			}
			io.Copy(io.Discard, resp.Body)
			if b, err := br.ReadByte(); err == nil || isTimeout(err) {
				t.Fatalf("connection still open after the linger (read %q, %v)", b, err)
			}
		})
	}
}
