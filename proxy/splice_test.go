package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/internal/logtest"
)

// TestSpliceRelay: Content-Length bodies from a keep-alive HTTP/1.1
// upstream reach a keep-alive client byte-exact, spliced (on Linux) when
// enough is left after the head's read, copied otherwise or when NoSplice
// is set; the upstream connection is reused after a spliced body.
func TestSpliceRelay(t *testing.T) {
	// The second body is under spliceMin however the origin's writes
	// reach the proxy's first read (20 KiB was spliced or not depending
	// on whether body bytes came with the head: a flake).
	sizes := []int{300 << 10, spliceMin - 1, 5<<20 + 7, 0, 100 << 10}
	bodies := make([][]byte, len(sizes))
	for i, n := range sizes {
		bodies[i] = make([]byte, n)
		rand.NewChaCha8([32]byte{byte(i)}).Read(bodies[i])
	}
	for _, noSplice := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSplice=%v", noSplice), func(t *testing.T) {
			var accepted atomic.Int32
			origin := rawPeer(t, func(c net.Conn) {
				defer c.Close()
				accepted.Add(1)
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					var i int
					fmt.Sscanf(req.URL.Path, "/%d", &i)
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(bodies[i]))
					if _, err := c.Write(bodies[i]); err != nil {
						return
					}
				}
			})
			p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{NoSplice: noSplice}, ListenerConfig{Name: "http"})
			c := dialTCP(t, p.addr)
			c.SetDeadline(time.Now().Add(time.Minute))
			br := bufio.NewReader(c)
			before := splicedBodies.Load()
			for i := range sizes {
				fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(resp.Body)
				if err != nil || !bytes.Equal(got, bodies[i]) {
					t.Fatalf("body %d: %d bytes, want %d (%v)", i, len(got), len(bodies[i]), err)
				}
			}
			want := int64(3) // 300 KiB, 5 MiB and 100 KiB
			if noSplice || runtime.GOOS != "linux" {
				want = 0
			}
			// The relay counts a body once its splice returned, which can
			// be after the client read the last byte: wait for the count.
			waitFor(t, 10*time.Second, "the spliced bodies to be counted", func() bool {
				return splicedBodies.Load()-before >= want && counterValue(p.srv.metrics.spliced) >= float64(want)
			})
			if n := splicedBodies.Load() - before; n != want {
				t.Errorf("%d bodies spliced, want %d", n, want)
			}
			if n := counterValue(p.srv.metrics.spliced); n != float64(want) {
				t.Errorf("pingora_spliced_responses_total %v, want %d", n, want)
			}
			if n := accepted.Load(); n != 1 {
				t.Errorf("the upstream accepted %d connections, want 1 (reused)", n)
			}
		})
	}
}

// TestSpliceRelayFailures: a spliced relay that fails says which side
// failed, as the copy loop does, and never pools the upstream connection:
// an upstream that closes or stalls mid-body is an upstream error (the
// client's connection is cut short), a client that leaves or stops
// reading is a downstream one (the upstream connection is closed).
func TestSpliceRelayFailures(t *testing.T) {
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
	cases := []struct {
		name string
		// serve answers the request on c; it returns when done.
		serve func(c net.Conn)
		// client reads the response from c and returns.
		client  func(t *testing.T, c net.Conn)
		want    string // in the access log's error
		timeout bool   // the error is a timeout
	}{
		{
			name: "upstream closes mid-body",
			serve: func(c net.Conn) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
				for range 4 {
					c.Write(chunk)
				}
			},
			client: readShort,
			want:   "proxy: upstream connection_closed",
		},
		{
			name: "upstream stalls mid-body",
			serve: func(c net.Conn) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
				c.Write(chunk)
				c.Write(chunk)
				c.Read(make([]byte, 1)) // until the proxy closes it
			},
			client:  readShort,
			want:    "proxy: upstream read_timeout",
			timeout: true,
		},
		{
			name:  "client leaves mid-body",
			serve: streamBody(chunk),
			client: func(t *testing.T, c net.Conn) {
				if _, err := io.ReadFull(c, make([]byte, 300<<10)); err != nil {
					t.Fatal(err)
				}
				c.(*net.TCPConn).SetLinger(0) // a reset: the proxy's next write fails
				c.Close()
			},
			want: "proxy: downstream connection_closed",
		},
		{
			name:  "client stops reading",
			serve: streamBody(chunk),
			client: func(t *testing.T, c net.Conn) {
				if _, err := io.ReadFull(c, make([]byte, 300<<10)); err != nil {
					t.Fatal(err)
				}
				// and reads no more: the proxy's write idle timeout ends it
			},
			want:    "proxy: downstream read_timeout",
			timeout: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			upClosed := make(chan struct{})
			origin := rawPeer(t, func(c net.Conn) {
				defer close(upClosed)
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				tc.serve(c)
			})
			var logged logtest.Buffer
			cfg := Config{AccessLog: slog.New(slog.NewJSONHandler(&logged, nil))}
			cfg.Downstream.WriteIdleTimeout = 300 * time.Millisecond
			peer := &Peer{Addr: origin}
			peer.Timeouts.ReadIdle = 300 * time.Millisecond
			p := startProxy(t, routerFor(t, peer), cfg, ListenerConfig{Name: "http"})
			before := splicedBodies.Load()
			c := dialTCP(t, p.addr)
			c.SetDeadline(time.Now().Add(time.Minute))
			io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
			tc.client(t, c)
			waitFor(t, 20*time.Second, "the access log record", func() bool { return strings.Contains(logged.String(), `"error"`) })
			if s := logged.String(); !strings.Contains(s, tc.want) {
				t.Fatalf("access log %s, want an error with %q", s, tc.want)
			}
			select {
			case <-upClosed:
			case <-time.After(20 * time.Second):
				t.Fatal("the upstream connection was not closed")
			}
			if runtime.GOOS == "linux" && splicedBodies.Load() == before {
				t.Error("the body was not spliced")
			}
		})
	}
}

// streamBody answers with a 1 GiB body it writes until the proxy closes
// the connection.
func streamBody(chunk []byte) func(net.Conn) {
	return func(c net.Conn) {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 1<<30)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}
}

// readShort reads a response whose body ends before its Content-Length:
// the proxy closes the connection.
func readShort(t *testing.T, c net.Conn) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n >= resp.ContentLength {
		t.Fatalf("read %d of %d bytes, err %v: want the body cut short", n, resp.ContentLength, err)
	}
}
