package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// BenchmarkProxyH1 measures one proxied HTTP/1.1 request end to end over
// loopback: a keep-alive client, the proxy, and a pooled connection to a
// minimal origin. allocs/op counts the whole process (client and origin
// included); BenchmarkProxyH1 with a raw origin isolates the proxy.
func BenchmarkProxyH1(b *testing.B) {
	benchProxyH1(b, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"+string(make([]byte, 100)))
}

// BenchmarkProxyH1100k is BenchmarkProxyH1 with a 100 KiB body (bench/run.sh's
// h1-100k), framed by Content-Length and in 8 KiB chunks.
func BenchmarkProxyH1100k(b *testing.B) {
	body := make([]byte, 100<<10)
	b.Run("length", func(b *testing.B) {
		benchProxyH1(b, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	})
	b.Run("chunked", func(b *testing.B) {
		resp := []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for p := body; len(p) > 0; {
			k := min(8<<10, len(p))
			resp = append(fmt.Appendf(resp, "%x\r\n", k), p[:k]...)
			resp, p = append(resp, "\r\n"...), p[k:]
		}
		benchProxyH1(b, string(resp)+"0\r\n\r\n")
	})
}

func benchProxyH1(b *testing.B, resp string) {
	benchProxyH1Peer(b, &Peer{Addr: startRawOrigin(b, resp)})
}

// benchProxyH1Peer is benchProxyH1 against peer.
func benchProxyH1Peer(b *testing.B, peer *Peer) {
	p := startProxy(b, routerFor(b, peer), Config{}, ListenerConfig{Name: "http"})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /small HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readRawResponse(br); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProxyH1NewConn measures a new client connection per request
// (bench/run.sh's churn test): accept, one proxied request with
// "Connection: close", close. allocs/op counts the client's dial and
// response parsing too.
func BenchmarkProxyH1NewConn(b *testing.B) {
	origin := startRawOrigin(b, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"+string(make([]byte, 100)))
	p := startProxy(b, routerFor(b, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http"})
	req := []byte("GET /small HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(nil)
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		br.Reset(c)
		if err := readRawResponse(br); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkProxyH1UpstreamClose measures a new upstream connection per
// request (bench/run.sh's upclose test): the client keeps its connection,
// the origin answers "Connection: close" and closes, so the proxy dials for
// every request (the raw origin's loop ends when the proxy closes). B/op
// and allocs/op count the origin's accept too.
func BenchmarkProxyH1UpstreamClose(b *testing.B) {
	benchProxyH1(b, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"+string(make([]byte, 100)))
}

// startRawOrigin answers every request on every connection with resp,
// with as little work as possible so the proxy dominates the profile.
func startRawOrigin(t testing.TB, resp string) string {
	out := []byte(resp) // converted once: not counted in allocs/op
	return rawPeer(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			// Read one request head: lines until an empty one.
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) <= 2 {
					break
				}
			}
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	})
}

// readRawResponse reads one response and its body.
func readRawResponse(br *bufio.Reader) error {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// BenchmarkBuildUpstreamRequest measures the header copy of one request:
// end-to-end fields of a typical browser request copied, hop-by-hop ones
// dropped, X-Forwarded-* and Via appended.
func BenchmarkBuildUpstreamRequest(b *testing.B) {
	req := &RequestHeader{Method: "GET", URI: "/assets/app.js?v=3", Host: "www.example.com", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"},
			"Accept":          {"*/*"},
			"Accept-Language": {"en-US,en;q=0.9"},
			"Accept-Encoding": {"gzip, deflate, br"},
			"Referer":         {"https://www.example.com/"},
			"Cookie":          {"session=0123456789abcdef; theme=dark"},
			"Connection":      {"keep-alive"},
			"Keep-Alive":      {"timeout=5"},
			"Sec-Fetch-Mode":  {"no-cors"},
			"Sec-Fetch-Site":  {"same-origin"},
		}}
	sess := &Session{Req: req, ClientIP: "192.0.2.10"}
	var dst RequestHeader
	b.ReportAllocs()
	for b.Loop() {
		buildUpstreamRequest(sess, &dst, "https", "1.1 pingora-go", "")
	}
	if len(dst.Header) != 12 {
		b.Fatalf("%d fields: %v", len(dst.Header), dst.Header)
	}
}

// BenchmarkStripHopByHop measures cleaning a typical response head.
func BenchmarkStripHopByHop(b *testing.B) {
	src := http.Header{
		"Content-Type":   {"text/html; charset=utf-8"},
		"Content-Length": {"5120"},
		"Cache-Control":  {"max-age=60"},
		"Date":           {"Sun, 29 Nov 2026 03:00:00 GMT"},
		"Etag":           {`"abc123"`},
		"Server":         {"origin"},
		"Connection":     {"keep-alive"},
		"Keep-Alive":     {"timeout=5"},
	}
	h := make(http.Header, len(src))
	b.ReportAllocs()
	for b.Loop() {
		for k, v := range src {
			h[k] = v
		}
		stripHopByHop(h)
	}
	if len(h) != 6 {
		b.Fatalf("%d fields left", len(h))
	}
}

// BenchmarkProxyH2C measures one proxied request from an HTTP/2 client
// (prior knowledge, one connection, parallel streams) through the proxy to
// an HTTP/1.1 origin. The client's own cost is included.
func BenchmarkProxyH2C(b *testing.B) {
	origin := startRawOrigin(b, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"+string(make([]byte, 100)))
	p := startProxy(b, routerFor(b, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http", H2C: true})
	c := h2cClient()
	url := "http://" + p.addr + "/small"
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkProxyH2TLS is BenchmarkProxyH2C over TLS with ALPN h2 (bench/run.sh's
// tls-h2-small and tls-h2-100k), the client's cost included: against
// BenchmarkProxyH2C it shows what TLS adds per request.
func BenchmarkProxyH2TLS(b *testing.B) {
	for _, size := range []int{100, 100 << 10} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			origin := startRawOrigin(b, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", size, make([]byte, size)))
			ca := newTestCA(b)
			certs, err := NewCertStoreFromCerts([]tls.Certificate{ca.issue(b, "proxy.test")})
			if err != nil {
				b.Fatal(err)
			}
			p := startProxy(b, routerFor(b, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "tls", TLS: certs})
			c := tlsClient(ca.pool, "proxy.test", true)
			url := "https://" + p.addr + "/small"
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
