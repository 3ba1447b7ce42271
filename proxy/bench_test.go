package proxy

import (
	"bufio"
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
	origin := startRawOrigin(b, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"+string(make([]byte, 100)))
	p := startProxy(b, routerFor(b, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http"})
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

// startRawOrigin answers every request on every connection with resp,
// with as little work as possible so the proxy dominates the profile.
func startRawOrigin(t testing.TB, resp string) string {
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
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	})
}

// readRawResponse reads one response with a Content-Length body.
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
