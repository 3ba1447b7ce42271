//go:build linux

package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// connPairs returns a connection of each sockIO type with its peer: an
// upstream connection (dialedConn, and the tcpConn of dialIP) and the
// server side of it, and a
// client-side net.Conn and the connection Listen accepted for it
// (tcpConn).
func connPairs(t *testing.T) map[string][2]net.Conn {
	t.Helper()
	pairs := map[string][2]net.Conn{}

	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	nc, err := net.Dial("tcp", nl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	dc := wrapDialed(nc)
	if _, ok := dc.(*dialedConn); !ok {
		t.Fatalf("wrapDialed gave a %T, want a *dialedConn", dc)
	}
	peer, err := nl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	pairs["dialed"] = [2]net.Conn{dc, peer}

	ic, err := dialIP(context.Background(), netip.MustParseAddrPort(nl.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ic.(*tcpConn); !ok {
		t.Fatalf("dialIP gave a %T, want a *tcpConn", ic)
	}
	ipeer, err := nl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	pairs["dialIP"] = [2]net.Conn{ic, ipeer}

	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sc, cc := acceptOne(t, ln)
	if _, ok := sc.(*tcpConn); !ok {
		t.Fatalf("Listen accepted a %T, want a *tcpConn", sc)
	}
	if _, err := io.ReadFull(sc, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	pairs["accepted"] = [2]net.Conn{sc, cc}
	t.Cleanup(func() {
		for _, p := range pairs {
			p[0].Close()
			p[1].Close()
		}
	})
	return pairs
}

// acceptOne connects to ln and accepts the connection. The client has
// sent one byte, "x", for TCP_DEFER_ACCEPT to let it through.
func acceptOne(t *testing.T, ln net.Listener) (server, client net.Conn) {
	t.Helper()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc.Write([]byte("x"))
	sc, err := ln.Accept()
	if err != nil {
		cc.Close()
		t.Fatal(err)
	}
	return sc, cc
}

// TestSockIOConn: both connection types whose reads and writes are raw
// system calls keep *net.TCPConn's contract where the proxy depends on it:
// bytes both ways at once, a timeout error on a deadline (and none once it
// is cleared), io.EOF at the peer's FIN, the peer's reset as
// syscall.ECONNRESET inside a *net.OpError, and net.ErrClosed after Close.
func TestSockIOConn(t *testing.T) {
	for name, p := range connPairs(t) {
		t.Run(name, func(t *testing.T) {
			c, peer := p[0], p[1]
			peer.SetDeadline(time.Now().Add(10 * time.Second)) // a guard, not a measure

			// Full duplex: a read waits while writes go out.
			got := make(chan []byte, 1)
			go func() {
				b := make([]byte, 5)
				_, err := io.ReadFull(c, b)
				if err != nil {
					b = []byte(err.Error())
				}
				got <- b
			}()
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			pb := make([]byte, 4)
			if _, err := io.ReadFull(peer, pb); err != nil || string(pb) != "ping" {
				t.Fatalf("peer read %q, %v", pb, err)
			}
			peer.Write([]byte("hello"))
			if b := <-got; string(b) != "hello" {
				t.Fatalf("read %q, want hello", b)
			}

			buf := make([]byte, 8)
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := c.Read(buf)
			var ne net.Error
			var oe *net.OpError
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) ||
				!errors.As(err, &oe) || oe.Op != "read" {
				t.Fatalf("read past the deadline: %T %v, want a timeout *net.OpError", err, err)
			}
			c.SetReadDeadline(time.Time{})
			peer.Write([]byte("again"))
			if n, err := io.ReadFull(c, buf[:5]); err != nil || string(buf[:n]) != "again" {
				t.Fatalf("read after clearing the deadline: %q, %v", buf[:n], err)
			}

			if len(c.LocalAddr().String()) == 0 || c.RemoteAddr().String() != peer.LocalAddr().String() {
				t.Fatalf("addresses %v -> %v, peer at %v", c.LocalAddr(), c.RemoteAddr(), peer.LocalAddr())
			}
			// A gathered write that fails (here before it starts, at its
			// deadline) leaves nothing behind for the next write.
			c.SetWriteDeadline(time.Now().Add(-time.Second))
			if _, err := c.(vecWriter).writev([][]byte{[]byte("lost")}); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("writev past the deadline: %v, want a timeout", err)
			}
			c.SetWriteDeadline(time.Time{})
			if _, err := c.Write([]byte("after")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(peer, pb[:4]); err != nil || string(pb) != "afte" {
				t.Fatalf("peer read %q, %v; want the write after the failed writev", pb, err)
			}
			if _, err := c.(syscall.Conn).SyscallConn(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSockIOEnds(t *testing.T) {
	t.Run("eof", func(t *testing.T) {
		for name, p := range connPairs(t) {
			c, peer := p[0], p[1]
			peer.(interface{ CloseWrite() error }).CloseWrite()
			if n, err := c.Read(make([]byte, 4)); n != 0 || err != io.EOF {
				t.Fatalf("%s: read after the peer's FIN: %d, %v; want io.EOF", name, n, err)
			}
			// CloseWrite reaches the peer as EOF.
			if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			peer.SetReadDeadline(time.Now().Add(10 * time.Second))
			if b, err := io.ReadAll(peer); err != nil || len(b) != 0 {
				t.Fatalf("%s: peer read %q, %v after CloseWrite", name, b, err)
			}
		}
	})
	t.Run("reset", func(t *testing.T) {
		for name, p := range connPairs(t) {
			c, peer := p[0], p[1]
			setLinger0(t, peer)
			peer.Close() // an RST, not a FIN
			_, err := c.Read(make([]byte, 4))
			var oe *net.OpError
			var se *os.SyscallError
			if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" || !errors.As(err, &se) {
				t.Fatalf("%s: read after a reset: %T %v; want ECONNRESET in a *net.OpError and *os.SyscallError", name, err, err)
			}
		}
	})
	t.Run("closed", func(t *testing.T) {
		for name, p := range connPairs(t) {
			c := p[0]
			blocked := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 4))
				blocked <- err
			}()
			c.Close()
			if err := <-blocked; !errors.Is(err, net.ErrClosed) {
				t.Fatalf("%s: a read that Close ended: %v, want net.ErrClosed", name, err)
			}
			if _, err := c.Read(make([]byte, 4)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("%s: read after Close: %v, want net.ErrClosed", name, err)
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("%s: write after Close: %v, want net.ErrClosed", name, err)
			}
			if _, err := c.(vecWriter).writev([][]byte{[]byte("x")}); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("%s: writev after Close: %v, want net.ErrClosed", name, err)
			}
		}
	})
}

func setLinger0(t *testing.T, c net.Conn) {
	t.Helper()
	if tc, ok := c.(*net.TCPConn); ok {
		if err := tc.SetLinger(0); err != nil {
			t.Fatal(err)
		}
		return
	}
	rc, _ := c.(syscall.Conn).SyscallConn()
	rc.Control(func(fd uintptr) {
		unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	})
}

// TestSockIOWritevPartial: a gathered write of more buffers than one
// writev(2) takes, to a peer that reads slowly through small socket
// buffers, goes out whole and in order across partial writes and waits
// for the socket to drain; so does a large plain write.
func TestSockIOWritevPartial(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for name, p := range connPairs(t) {
		t.Run(name, func(t *testing.T) {
			c, peer := p[0], p[1]
			rc, _ := c.(syscall.Conn).SyscallConn()
			rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096) })
			var bufs [][]byte
			var want bytes.Buffer
			for i := 0; i < 2*maxIOV+7; i++ {
				b := make([]byte, rng.Intn(3000)) // some empty
				rng.Read(b)
				bufs = append(bufs, b)
				want.Write(b)
			}
			big := make([]byte, 3<<20)
			rng.Read(big)
			want.Write(big)

			got := make(chan []byte, 1)
			go func() {
				peer.SetReadDeadline(time.Now().Add(30 * time.Second)) // a guard
				b := make([]byte, want.Len())
				var n int
				for n < len(b) {
					m, err := peer.Read(b[n:min(len(b), n+1500)]) // small reads: the writer waits
					n += m
					if err != nil {
						break
					}
				}
				got <- b[:n]
			}()
			var total int64
			for _, b := range bufs {
				total += int64(len(b))
			}
			n, err := c.(vecWriter).writev(bufs)
			if err != nil || n != total {
				t.Fatalf("writev wrote %d of %d: %v", n, total, err)
			}
			if m, err := c.Write(big); err != nil || m != len(big) {
				t.Fatalf("write wrote %d of %d: %v", m, len(big), err)
			}
			if b := <-got; !bytes.Equal(b, want.Bytes()) {
				t.Fatalf("peer got %d bytes, want %d (equal prefix: %v)", len(b), want.Len(), bytes.HasPrefix(want.Bytes(), b))
			}
		})
	}
}

// TestSockIOHeldWrite: a held write goes out with the next read, which
// then returns the answer; a held write larger than the send buffer is
// finished by an ordinary write before the read; one no read takes goes
// out before the next write; a peer that reset the connection fails the
// read.
func TestSockIOHeldWrite(t *testing.T) {
	for _, kind := range []string{"dialed", "dialIP"} {
		t.Run(kind, func(t *testing.T) { testSockIOHeldWrite(t, kind) })
	}
}

// heldConn is an upstream connection type: a net.Conn with holdNextWrite,
// and its sockIO.
type heldConn interface {
	net.Conn
	writeHolder
}

func sockIOOf(c net.Conn) *sockIO {
	switch c := c.(type) {
	case *dialedConn:
		return &c.io
	case *tcpConn:
		return &c.io
	}
	panic(fmt.Sprintf("no sockIO in a %T", c))
}

func testSockIOHeldWrite(t *testing.T, kind string) {
	pair := func(t *testing.T) (heldConn, net.Conn) {
		p := connPairs(t)[kind]
		p[1].SetDeadline(time.Now().Add(30 * time.Second))
		p[0].SetDeadline(time.Now().Add(30 * time.Second))
		return p[0].(heldConn), p[1]
	}
	// answer reads n bytes on peer and answers with what it read, reversed
	// in case: a round trip whose answer only comes after the request.
	answer := func(peer net.Conn, n int) chan []byte {
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, n)
			var m int
			for m < n {
				k, err := peer.Read(b[m:min(n, m+1500)])
				m += k
				if err != nil {
					break
				}
			}
			got <- b[:m]
			peer.Write(bytes.ToUpper(b[:min(m, 64)]))
		}()
		return got
	}
	t.Run("small", func(t *testing.T) {
		c, peer := pair(t)
		got := answer(peer, 4)
		c.holdNextWrite()
		if n, err := c.Write([]byte("ping")); n != 4 || err != nil {
			t.Fatalf("held write: %d, %v", n, err)
		}
		b := make([]byte, 16)
		n, err := c.Read(b)
		if err != nil || string(b[:n]) != "PING" {
			t.Fatalf("read %q, %v; want PING", b[:n], err)
		}
		if g := <-got; string(g) != "ping" {
			t.Fatalf("peer got %q", g)
		}
	})
	t.Run("over the send buffer", func(t *testing.T) {
		c, peer := pair(t)
		sockIOOf(c).rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096) })
		big := bytes.Repeat([]byte("abcdefgh"), 1<<18) // 2 MiB
		got := answer(peer, len(big))
		c.holdNextWrite()
		if n, err := c.Write(big); n != len(big) || err != nil {
			t.Fatalf("held write: %d, %v", n, err)
		}
		b := make([]byte, 64)
		n, err := c.Read(b)
		if err != nil || string(b[:n]) != string(bytes.ToUpper(big[:64])) {
			t.Fatalf("read %q, %v", b[:n], err)
		}
		if g := <-got; !bytes.Equal(g, big) {
			t.Fatalf("peer got %d bytes, want %d", len(g), len(big))
		}
	})
	t.Run("written before the next write", func(t *testing.T) {
		c, peer := pair(t)
		got := answer(peer, 6)
		c.holdNextWrite()
		c.Write([]byte("held"))
		if n, err := c.Write([]byte("up")); n != 2 || err != nil {
			t.Fatalf("write: %d, %v", n, err)
		}
		if g := <-got; string(g) != "heldup" {
			t.Fatalf("peer got %q, want heldup", g)
		}
	})
	t.Run("read failed before sending", func(t *testing.T) {
		c, peer := pair(t)
		got := answer(peer, 6)
		c.holdNextWrite()
		c.Write([]byte("held"))
		c.SetReadDeadline(time.Now().Add(-time.Second))
		if _, err := c.Read(make([]byte, 16)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past its deadline: %v", err)
		}
		if n, err := c.Write([]byte("up")); n != 2 || err != nil {
			t.Fatalf("write: %d, %v", n, err)
		}
		if g := <-got; string(g) != "heldup" {
			t.Fatalf("peer got %q, want heldup: the held bytes were lost with the failed read", g)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		// The read that sent the held bytes waits for the answer under
		// its deadline: a tcpConn's must reach the poller then (it is
		// only recorded until something waits).
		c, peer := pair(t)
		got := answer(peer, 100) // reads the request, never answers
		c.holdNextWrite()
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		done := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 16))
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read with no answer: %v, want a timeout", err)
			}
		case <-time.After(10 * time.Second):
			c.Close()
			t.Fatal("the read waiting for an answer outlived its deadline by 10 s")
		}
		peer.Close()
		<-got
	})
	t.Run("reset peer", func(t *testing.T) {
		c, peer := pair(t)
		setLinger0(t, peer)
		peer.Close()
		c.holdNextWrite()
		c.Write([]byte("ping"))
		b := make([]byte, 16)
		if n, err := c.Read(b); err == nil {
			t.Fatalf("read %q from a reset connection", b[:n])
		}
	})
}
