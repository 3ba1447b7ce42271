//go:build linux

package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDialIP: dialIP's connections and errors are those of the net
// package's dialer where the proxy reads them (classifyDial, the
// addresses), over IPv4 and IPv6.
func TestDialIP(t *testing.T) {
	t.Run("connects", func(t *testing.T) {
		for _, network := range []string{"tcp4", "tcp6"} {
			ln, err := net.Listen(network, map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network])
			if err != nil {
				t.Logf("%s: %v (skipped)", network, err)
				continue
			}
			defer ln.Close()
			ap := netip.MustParseAddrPort(ln.Addr().String())
			c, err := dialIP(context.Background(), ap, 5*time.Second)
			if err != nil {
				t.Fatalf("%s: %v", network, err)
			}
			defer c.Close()
			peer, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			if c.RemoteAddr().String() != ln.Addr().String() || c.LocalAddr().String() != peer.RemoteAddr().String() {
				t.Fatalf("%s: addresses %v -> %v; the peer sees %v -> %v", network, c.LocalAddr(), c.RemoteAddr(), peer.RemoteAddr(), peer.LocalAddr())
			}
			go c.Write([]byte("hi"))
			b := make([]byte, 2)
			peer.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(peer, b); err != nil || string(b) != "hi" {
				t.Fatalf("%s: peer read %q, %v", network, b, err)
			}
			// TCP_NODELAY on, keep-alive off.
			rc, _ := c.(syscall.Conn).SyscallConn()
			var nodelay, keepalive int
			rc.Control(func(fd uintptr) {
				nodelay, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY)
				keepalive, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
			})
			if nodelay == 0 || keepalive != 0 {
				t.Fatalf("%s: TCP_NODELAY %d, SO_KEEPALIVE %d; want 1, 0", network, nodelay, keepalive)
			}
		}
	})
	t.Run("low descriptor", func(t *testing.T) {
		// A socket opened as descriptor 0-2 (a process started with
		// standard streams closed) is moved above 2, as an accepted one.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		restore := freeStdin(t)
		c, err := dialIP(context.Background(), netip.MustParseAddrPort(ln.Addr().String()), 5*time.Second)
		restore()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fd := -1
		rc, _ := c.(syscall.Conn).SyscallConn()
		rc.Control(func(f uintptr) { fd = int(f) })
		if fd <= 2 {
			t.Fatalf("dialled socket is descriptor %d, want > 2", fd)
		}
	})
	t.Run("refused", func(t *testing.T) {
		_, err := dialIP(context.Background(), netip.MustParseAddrPort(deadAddr(t)), 5*time.Second)
		var oe *net.OpError
		if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &oe) || oe.Op != "dial" {
			t.Fatalf("dial to a closed port: %T %v; want ECONNREFUSED in a dial *net.OpError", err, err)
		}
		if k := classifyDial(err).Kind; k != KindConnectRefused {
			t.Fatalf("classified as %v, want %v", k, KindConnectRefused)
		}
	})
	// full is a listening socket whose accept queue is full: a connect to
	// it waits for an answer to its SYN that does not come.
	full := func(t *testing.T) netip.AddrPort {
		fd, port := boundSocket(t)
		if err := unix.Listen(fd, 0); err != nil {
			t.Fatal(err)
		}
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
		filler, err := net.DialTimeout("tcp", ap.String(), 5*time.Second) // takes the one place
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { filler.Close() })
		return ap
	}
	t.Run("timeout", func(t *testing.T) {
		ap := full(t)
		_, err := dialIP(context.Background(), ap, 100*time.Millisecond)
		if !errors.Is(err, os.ErrDeadlineExceeded) || !isTimeout(err) {
			t.Fatalf("dial to a full accept queue: %T %v; want a timeout", err, err)
		}
		if k := classifyDial(err).Kind; k != KindConnectTimeout {
			t.Fatalf("classified as %v, want %v", k, KindConnectTimeout)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ap := full(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := dialIP(ctx, ap, time.Minute)
			done <- err
		}()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("canceled dial: %v, want context.Canceled", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a canceled dial went on")
		}
		if _, err := dialIP(ctx, ap, time.Minute); !errors.Is(err, context.Canceled) {
			t.Fatalf("dial with a canceled context: %v", err)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		ap := full(t)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := dialIP(ctx, ap, time.Minute)
		if !isTimeout(err) {
			t.Fatalf("dial past its context's deadline: %v, want a timeout", err)
		}
	})
}

// TestDialSelfConnect: a loopback socket connected to itself (bound to a
// port, then connected to it: the TCP simultaneous open a dial to a free
// ephemeral port can fall into) is told apart from a real connection, and
// only loopback ports in the ephemeral range are checked.
func TestDialSelfConnect(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	lo := [4]byte{127, 0, 0, 1}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: lo}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	port := sa.(*unix.SockaddrInet4).Port
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: lo, Port: port}); err != nil {
		unix.Close(fd)
		t.Fatalf("self-connect: %v", err)
	}
	unix.SetNonblock(fd, true)
	self := newTCPConn(fd, nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	defer self.Close()
	if !selfConnected(self) {
		t.Fatal("a socket connected to itself was not seen as such")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := dialIP(context.Background(), netip.MustParseAddrPort(ln.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if selfConnected(c.(*tcpConn)) {
		t.Fatal("a real connection was seen as connected to itself")
	}
	low, high := ephemeralPorts()
	for ap, want := range map[string]bool{
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), low).String(): true,
		netip.AddrPortFrom(netip.MustParseAddr("::1"), high).String():      true,
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 80).String():  false,
		netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), low).String(): false,
	} {
		if got := mayConnectToSelf(netip.MustParseAddrPort(ap)); got != want {
			t.Errorf("mayConnectToSelf(%s) = %v, want %v", ap, got, want)
		}
	}
}

// TestWaitConnectCancelNotAfter: a context canceled as the connect ends
// runs waitConnect's context.AfterFunc, which sets a past write deadline
// on its own goroutine; it ran after waitConnect had returned the
// connection, whose writes then failed (an HTTP/2 connection is shared by
// other requests). waitConnect now waits for it and fails the dial. The
// cancel comes in the connectWaited hook, which also waits until the
// deadline landed.
func TestWaitConnectCancelNotAfter(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ap := netip.MustParseAddrPort(ln.Addr().String())
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		t.Fatal(err)
	}
	c := newTCPConn(fd, nil, net.TCPAddrFromAddrPort(ap))
	defer c.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	connectWaited = func() {
		cancel()
		deadline := time.Now().Add(10 * time.Second)
		for c.p.Write(func(uintptr) bool { return true }) == nil {
			if time.Now().After(deadline) {
				t.Error("the canceled context's deadline never reached the socket")
				return
			}
			time.Sleep(time.Millisecond) // sleep-ok: polling for the AfterFunc's goroutine
		}
	}
	defer func() { connectWaited = nil }()
	var ca connectAddr
	ca.set(ap)
	err = waitConnect(ctx, &c.p, ca, 0)
	if err == nil {
		t.Fatal("waitConnect returned a connection whose context's past write deadline landed on it after the wait")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("waitConnect: %v, want context.Canceled", err)
	}
}
