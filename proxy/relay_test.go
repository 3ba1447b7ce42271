package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"
)

// lockstepOrigin answers one request per connection with body, framed by
// Content-Length or in chunks of varying sizes, written in pieces of
// varying sizes. After each piece it waits until the client has received
// every body byte written so far (a slow upstream: the proxy must pass on
// what it has rather than wait to fill its relay buffer).
func lockstepOrigin(t *testing.T, body []byte, chunked bool, got <-chan int) string {
	return rawPeer(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		rng := rand.New(rand.NewPCG(1, 2))
		if chunked {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		} else {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
		}
		for off := 0; off < len(body); {
			n := min(1+rng.IntN(150<<10), len(body)-off)
			piece := body[off : off+n]
			if chunked {
				var out []byte
				for len(piece) > 0 {
					k := min(1+rng.IntN(20<<10), len(piece))
					out = fmt.Appendf(out, "%x\r\n", k)
					out = append(append(out, piece[:k]...), "\r\n"...)
					piece = piece[k:]
				}
				piece = out
			}
			if _, err := c.Write(piece); err != nil {
				return
			}
			off += n
			for sum := range got {
				if sum >= off {
					break
				}
			}
		}
		if chunked {
			io.WriteString(c, "0\r\nX-Sum: done\r\n\r\n")
		}
	})
}

// TestLargeBodyRelay sends a body of several MiB through the proxy, framed
// by Content-Length and chunked, from an upstream that writes in pieces
// and waits for the client to have each one, to a client that reads in
// small pieces: it arrives byte-exact, and a chunked upstream's trailer
// arrives too.
func TestLargeBodyRelay(t *testing.T) {
	body := make([]byte, 5<<20+12345)
	rand.NewChaCha8([32]byte{3}).Read(body)
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			got := make(chan int, 1)
			origin := lockstepOrigin(t, body, chunked, got)
			p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http"})
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReaderSize(c, 16), nil)
			if err != nil {
				t.Fatal(err)
			}
			var rcv []byte
			buf := make([]byte, 1000)
			for {
				n, err := resp.Body.Read(buf)
				rcv = append(rcv, buf[:n]...)
				if n > 0 {
					select { // the latest count replaces a stale one
					case <-got:
					default:
					}
					got <- len(rcv)
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(rcv), err)
				}
			}
			if !bytes.Equal(rcv, body) {
				t.Fatalf("body differs: got %d bytes, want %d", len(rcv), len(body))
			}
			if chunked && resp.Trailer.Get("X-Sum") != "done" {
				t.Errorf("trailer %v, want X-Sum: done", resp.Trailer)
			}
		})
	}
}

// TestIdleConnsHoldNoRelayBuffer keeps many keep-alive client connections
// open and idle after a large response on each: none holds a relay buffer.
func TestIdleConnsHoldNoRelayBuffer(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 200<<10)
	origin := startRawOrigin(t, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http"})
	const conns = 50
	for range conns {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		if err := readRawResponse(bufio.NewReader(c)); err != nil {
			t.Fatal(err)
		}
	}
	// The last response may reach the client just before its copy returns
	// the buffer.
	waitFor(t, 10*time.Second, "no relay buffer taken", func() bool { return relayBufs.Load() == 0 })
}
