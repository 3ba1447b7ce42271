package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
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
// bytes, and the connections it accepts have TCP keep-alive off and
// TCP_NODELAY on (inherited from the listening socket: acceptListener
// never sets it per connection).
func TestListenSocketOptions(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	al := ln.(*acceptListener)
	if v := deferAccept(t, al.TCPListener); v <= 0 {
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
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	c := sc.(*tcpConn)
	if v := intOpt(t, c, unix.SOL_SOCKET, unix.SO_KEEPALIVE); v != 0 {
		t.Fatalf("SO_KEEPALIVE %d on an accepted connection, want 0", v)
	}
	if v := intOpt(t, c, unix.IPPROTO_TCP, unix.TCP_NODELAY); v == 0 {
		t.Fatal("TCP_NODELAY off on an accepted connection")
	}
}

// TestAcceptedConn: a connection from acceptListener behaves as a
// *net.TCPConn where the proxy depends on it: its addresses, io.EOF at the
// client's FIN, a timeout error on a deadline, CloseWrite as a FIN to the
// client, net.ErrClosed after Close; and a closed listener's Accept fails
// with net.ErrClosed (the server's sign to stop).
func TestAcceptedConn(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", ":0"} {
		t.Run(addr, func(t *testing.T) {
			ln, err := Listen(addr)
			if err != nil {
				t.Skip(err) // no IPv6 here
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			dial := ln.Addr().String()
			if addr == ":0" {
				dial = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			}
			cc, err := net.Dial("tcp", dial)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			cc.Write([]byte("ping"))
			sc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			if got, want := sc.RemoteAddr().String(), cc.LocalAddr().String(); got != want {
				t.Fatalf("RemoteAddr %s, want %s", got, want)
			}
			if got, want := sc.LocalAddr().String(), cc.RemoteAddr().String(); got != want {
				t.Fatalf("LocalAddr %s, want %s", got, want)
			}
			buf := make([]byte, 8)
			if n, err := io.ReadFull(sc, buf[:4]); err != nil || string(buf[:n]) != "ping" {
				t.Fatalf("read %q, %v", buf[:n], err)
			}
			sc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err = sc.Read(buf)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read past the deadline: %v, want a timeout", err)
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "read" {
				t.Fatalf("read error %T %v, want a *net.OpError", err, err)
			}
			sc.SetReadDeadline(time.Time{})
			if _, err := sc.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			if err := sc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			cc.SetReadDeadline(time.Now().Add(10 * time.Second)) // a guard, not a measure
			if b, err := io.ReadAll(cc); err != nil || string(b) != "pong" {
				t.Fatalf("client read %q, %v; want pong then EOF", b, err)
			}
			cc.(*net.TCPConn).CloseWrite()
			if n, err := sc.Read(buf); n != 0 || err != io.EOF {
				t.Fatalf("read after the client's FIN: %d, %v; want io.EOF", n, err)
			}
			sc.Close()
			if _, err := sc.Read(buf); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after Close: %v, want net.ErrClosed", err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := ln.Accept()
				done <- err
			}()
			ln.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Accept still waiting after Close")
			}
		})
	}
}

// TestAcceptedLowDescriptor: a socket accepted as descriptor 0-2 (a
// process started with standard streams closed) is moved above 2, where an
// *os.File never raises SIGPIPE on a write to a client that left.
func TestAcceptedLowDescriptor(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The client's socket first: it would take descriptor 0 itself.
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.Write([]byte("G"))
	// Free descriptor 0 (standard input, unused by tests) for the accept.
	restore := freeStdin(t)
	sc, err := ln.Accept()
	restore()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	fd := -1
	rc, _ := sc.(*tcpConn).SyscallConn()
	rc.Control(func(f uintptr) { fd = int(f) })
	if fd <= 2 {
		t.Fatalf("accepted socket is descriptor %d, want > 2", fd)
	}
}

// freeStdin closes descriptor 0 (standard input, unused by tests), so that
// the next descriptor opened is 0; the function it returns puts standard
// input back.
func freeStdin(t *testing.T) func() {
	t.Helper()
	saved, err := unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Skip("no standard input to move:", err)
	}
	unix.Close(0)
	return func() {
		unix.Dup3(saved, 0, 0)
		unix.Close(saved)
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
	adopted, err := AdoptListener(inherited)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.Write([]byte("G"))
	sc, err := adopted.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if v := intOpt(t, sc.(*tcpConn), unix.SOL_SOCKET, unix.SO_KEEPALIVE); v != 0 {
		t.Fatalf("SO_KEEPALIVE %d on a connection the adopted listener accepted, want 0", v)
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
