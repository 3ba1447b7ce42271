package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// upgradeOrigin answers an Upgrade with 101 and then echoes bytes until
// the client half-closes, then writes "bye" and closes.
func upgradeOrigin(t *testing.T) *Peer {
	return startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			http.Error(w, "no upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw)
		c.Write([]byte("bye"))
	}))
}

func TestUpgradeTunnel(t *testing.T) {
	app := routeWith(t, RouteConfig{Upgrades: []string{"echo"}}, upgradeOrigin(t))
	p := startProxy(t, app, Config{}, ListenerConfig{Name: "http"})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	for _, msg := range []string{"hello", strings.Repeat("x", 100000)} {
		io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
	}
	// Half-close: the origin sees EOF, answers "bye" and closes.
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after half-close: %q %v", rest, err)
	}
}

// chunkConn is a net.Conn whose reads take the chunks sent on in (a closed
// in is EOF) and report the size of each buffer they were given on sizes,
// as the read starts; writes are counted and dropped.
type chunkConn struct {
	net.Conn
	in      chan []byte
	sizes   chan int
	pending []byte
	written atomic.Int64
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		c.sizes <- len(p)
		b, ok := <-c.in
		if !ok {
			return 0, io.EOF
		}
		c.pending = b
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error)      { c.written.Add(int64(len(p))); return len(p), nil }
func (c *chunkConn) Close() error                     { return nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }

// TestTunnelIdleHoldsSmallBuffer: a tunnel direction waits for its next
// bytes with a small buffer and takes a large pooled one only while bytes
// keep coming. Before, each direction held a 32 KiB buffer for the
// tunnel's life: 4,000 idle WebSocket tunnels held 250 MB of them (about
// 108 KB of heap per tunnel in all, measured on a node).
func TestTunnelIdleHoldsSmallBuffer(t *testing.T) {
	src := &chunkConn{in: make(chan []byte), sizes: make(chan int, 1)}
	dst := &chunkConn{}
	tp := &tunnelPair{idle: time.Hour}
	tp.touch()
	done := make(chan int64, 1)
	go func() { done <- tp.pipe(dst, src, bufio.NewReader(strings.NewReader(""))) }()
	next := func() int {
		select {
		case n := <-src.sizes:
			return n
		case <-time.After(10 * time.Second):
			t.Fatal("the pipe did not read")
			return 0
		}
	}
	if n := next(); n > tunnelWaitBuf {
		t.Fatalf("an idle direction waits with a %d-byte buffer, want at most %d", n, tunnelWaitBuf)
	}
	src.in <- make([]byte, tunnelWaitBuf) // filled the small buffer: busy
	if n := next(); n != copyBufSize {
		t.Fatalf("a busy direction reads with %d bytes, want %d", n, copyBufSize)
	}
	src.in <- make([]byte, 100) // a short read: drained, idle again
	if n := next(); n > tunnelWaitBuf {
		t.Fatalf("after a short read the direction waits with %d bytes, want at most %d", n, tunnelWaitBuf)
	}
	close(src.in)
	if total := <-done; total != tunnelWaitBuf+100 || dst.written.Load() != total {
		t.Fatalf("pipe copied %d bytes, wrote %d; want %d", total, dst.written.Load(), tunnelWaitBuf+100)
	}
}
