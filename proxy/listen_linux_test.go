package proxy

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// intOpt reads an integer socket option of c.
func intOpt(t *testing.T, c interface {
	SyscallConn() (syscall.RawConn, error)
}, level, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestListenSocketOptions: Listen defers accept until the client's first
// bytes, and the connections it accepts have TCP keep-alive off.
func TestListenSocketOptions(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tl := ln.(*net.TCPListener)
	if v := deferAccept(t, tl); v <= 0 {
		t.Fatalf("TCP_DEFER_ACCEPT %d, want > 0", v)
	}
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := cc.Write([]byte("G")); err != nil {
		t.Fatal(err)
	}
	sc, err := tl.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if v := intOpt(t, sc, unix.SOL_SOCKET, unix.SO_KEEPALIVE); v != 0 {
		t.Fatalf("SO_KEEPALIVE %d on an accepted connection, want 0", v)
	}
	if v := intOpt(t, sc, unix.IPPROTO_TCP, unix.TCP_NODELAY); v == 0 {
		t.Fatal("TCP_NODELAY off on an accepted connection")
	}
}

// TestTuneListenerInherited: a listener rebuilt from its file, as a
// hand-off does (handoff.Inherited.Take uses net.FileListener), gets
// TCP_DEFER_ACCEPT from TuneListener.
func TestTuneListenerInherited(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	inherited, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer inherited.Close()
	if v := deferAccept(t, inherited.(*net.TCPListener)); v != 0 {
		t.Fatalf("TCP_DEFER_ACCEPT %d before TuneListener, want 0", v)
	}
	if err := TuneListener(inherited); err != nil {
		t.Fatal(err)
	}
	if v := deferAccept(t, inherited.(*net.TCPListener)); v <= 0 {
		t.Fatalf("TCP_DEFER_ACCEPT %d after TuneListener, want > 0", v)
	}
}

// TestDeferAcceptTimeouts: on a Listen listener, a client that sends part
// of a head still gets 408 after HeaderTimeout, and one that sends nothing
// is still disconnected (once the kernel hands it over, HeaderTimeout
// runs).
func TestDeferAcceptTimeouts(t *testing.T) {
	cfg := Config{}
	cfg.Downstream.HeaderTimeout = 100 * time.Millisecond
	srv, err := New(routerFor(t, h1Recorder(t).Peer), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveListener(t, srv, ln)
	if resp, _ := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: proxy.test\r\n"); resp.StatusCode != 408 {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a guard, not a measure
	n, err := c.Read(make([]byte, 1))
	if n != 0 || (!errors.Is(err, io.EOF) && !errors.Is(err, unix.ECONNRESET)) {
		t.Fatalf("silent client: read %d bytes, %v; want the server to close", n, err)
	}
}

func deferAccept(t *testing.T, l *net.TCPListener) int {
	t.Helper()
	return intOpt(t, l, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT)
}
