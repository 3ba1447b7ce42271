package wire_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wiretest"
)

// muxed serves wire behind a Mux on l, with a raw echo protocol on
// ProtoRaft beside it; it returns the Mux once both are serving.
func muxed(t *testing.T, l net.Listener, cfg wire.MuxConfig) *wire.Mux {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := wire.NewMux(l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rpcL, err := m.Listen(wire.ProtoRPC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Listen(wire.ProtoRPC); err == nil {
		t.Fatal("a second listener for one byte was accepted")
	}
	raftL, err := m.Listen(wire.ProtoRaft)
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, wire.ServerConfig{})
	done := make(chan struct{}, 3) // one per goroutine below
	go func() { srv.Serve(rpcL); done <- struct{}{} }()
	go func() { echoAll(raftL); done <- struct{}{} }()
	go func() {
		if err := m.Serve(); !errors.Is(err, wire.ErrClosed) {
			t.Errorf("Mux.Serve = %v, want ErrClosed", err)
		}
		done <- struct{}{}
	}()
	t.Cleanup(func() {
		m.Close()
		srv.Close()
		for range 3 {
			<-done
		}
	})
	return m
}

// echoAll echoes each accepted connection's bytes until l closes.
func echoAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() { defer c.Close(); io.Copy(c, c) }()
	}
}

func TestMuxRoutesByFirstByte(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := muxed(t, l, wire.MuxConfig{HandshakeTimeout: 200 * time.Millisecond})
	addr := l.Addr().String()

	cl, _ := wire.NewClient(wire.ClientConfig{})
	t.Cleanup(func() { cl.Close() })
	var resp echoResp
	if err := cl.Call(ctxT(t, 5*time.Second), addr, "echo", echoReq{"over the mux"}, &resp); err != nil || resp.Msg != "over the mux" {
		t.Fatalf("wire call through the mux: %v %q", err, resp.Msg)
	}

	// The raft side gets its byte unread, then the rest.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := append([]byte{wire.ProtoRaft}, "append entries"...)
	c.Write(msg)
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("raft echo = %q, %v; want %q", got, err, msg)
	}

	closedBy := func(first []byte) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(first)
		waitClosed(t, c)
	}
	closedBy([]byte("GET / HTTP/1.1\r\n\r\n")) // no listener for 'G'
	closedBy(nil)                              // silent past the handshake timeout
	st := m.Stats()
	if st.UnknownByte != 1 || st.NoFirstByte != 1 || st.Accepted != 4 {
		t.Fatalf("stats = %+v, want 4 accepted, 1 unknown byte, 1 silent", st)
	}
}

// TestMuxClosedProtocol: closing one protocol's listener refuses it and
// leaves the others serving.
func TestMuxClosedProtocol(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := muxed(t, l, wire.MuxConfig{})
	other, err := m.Listen(0x01)
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	if _, err := other.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed protocol listener: %v", err)
	}
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x01, 2, 3})
	waitClosed(t, c)
	cl, _ := wire.NewClient(wire.ClientConfig{})
	t.Cleanup(func() { cl.Close() })
	if err := cl.Call(ctxT(t, 5*time.Second), l.Addr().String(), "echo", echoReq{}, nil); err != nil {
		t.Fatalf("wire after another protocol closed: %v", err)
	}
}

// TestMuxSeveralBytes: one listener may take several first bytes (raft's
// own message types, from a peer that sends no protocol byte); they are
// all taken by it, unread, and all freed by its Close.
func TestMuxSeveralBytes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := muxed(t, l, wire.MuxConfig{})
	multi, err := m.Listen(0x05, 0x06)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Listen(0x07, 0x06); err == nil {
		t.Fatal("a byte taken by another listener was accepted")
	}
	go echoAll(multi)
	for _, first := range []byte{0x05, 0x06} {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte{first, 'x', 'y'}
		c.Write(msg)
		got := make([]byte, len(msg))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("byte 0x%02x: echo %q, %v; want %q", first, got, err, msg)
		}
		c.Close()
	}
	multi.Close()
	again, err := m.Listen(0x06, 0x07)
	if err != nil {
		t.Fatalf("Listen after Close: %v", err)
	}
	again.Close()
}

// TestMuxOverTLS: with the Mux over a TLS listener, the first byte travels
// inside TLS and wire works unchanged with a TLS dialer.
func TestMuxOverTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := tls.NewListener(tcp, &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	muxed(t, l, wire.MuxConfig{})
	tlsDial := wire.DialerFunc(func(ctx context.Context, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "node"}}
		return d.DialContext(ctx, "tcp", addr)
	})
	cl, _ := wire.NewClient(wire.ClientConfig{Dialer: tlsDial})
	t.Cleanup(func() { cl.Close() })
	var resp echoResp
	if err := cl.Call(ctxT(t, 5*time.Second), tcp.Addr().String(), "echo", echoReq{"mtls"}, &resp); err != nil || resp.Msg != "mtls" {
		t.Fatalf("wire over TLS through the mux: %v %q", err, resp.Msg)
	}
	plain, _ := wire.NewClient(wire.ClientConfig{})
	t.Cleanup(func() { plain.Close() })
	if err := plain.Call(ctxT(t, 5*time.Second), tcp.Addr().String(), "echo", echoReq{}, nil); err == nil {
		t.Fatal("a plaintext call through a TLS mux succeeded")
	}
}

// selfSigned makes a certificate for "node" that is its own CA.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node"}, DNSNames: []string{"node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// waitClosed fails unless the peer closes c (cleanly or with a reset)
// within 5s.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the peer did not close the connection: %v", err)
	}
}

// TestMuxConnLimit: with a limit of 2 on a protocol whose connections
// stay open (raft's do), a third connection is closed at once and counted;
// closing one of the two makes room for another. Before the limit every
// such connection stayed open (6,000 on a real node).
func TestMuxConnLimit(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := wire.NewMux(l, wire.MuxConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.ListenLimit(0, wire.ProtoRaft); err == nil {
		t.Fatal("a limit of 0 was accepted")
	}
	ln, err := m.ListenLimit(2, wire.ProtoRaft)
	if err != nil {
		t.Fatal(err)
	}
	go m.Serve()
	held := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c // held open, as raft holds its connections
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{wire.ProtoRaft})
		t.Cleanup(func() { c.Close() })
		return c
	}
	closedAtOnce := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	}
	dial()
	dial()
	first, second := <-held, <-held
	defer second.Close()
	if !closedAtOnce(dial()) {
		t.Fatal("a third connection was not closed")
	}
	if st := m.Stats(); st.OverLimit != 1 {
		t.Fatalf("OverLimit = %d, want 1", st.OverLimit)
	}
	first.Close()
	dial()
	select {
	case c := <-held:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a connection after one closed was not handed over")
	}
}

// emfileListener fails its first n Accepts with EMFILE, as accept4 does
// when the process is out of descriptors, then accepts.
type emfileListener struct {
	net.Listener
	n atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptOutOfDescriptors: an accept that fails because the process is
// out of descriptors (EMFILE) is retried after a backoff, by the Mux and
// by a Server alike; it closed the cluster port for good, though the
// connections waiting in the backlog are served once descriptors free.
func TestAcceptOutOfDescriptors(t *testing.T) {
	call := func(t *testing.T, addr string) {
		t.Helper()
		cl, _ := wire.NewClient(wire.ClientConfig{})
		defer cl.Close()
		var resp echoResp
		if err := cl.Call(ctxT(t, 10*time.Second), addr, "echo", echoReq{"after EMFILE"}, &resp); err != nil || resp.Msg != "after EMFILE" {
			t.Fatalf("call after EMFILE: %v %q", err, resp.Msg)
		}
	}
	t.Run("mux", func(t *testing.T) {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := &emfileListener{Listener: tl}
		l.n.Store(4)
		m := muxed(t, l, wire.MuxConfig{}) // its Serve must end with ErrClosed, not the accept error
		call(t, tl.Addr().String())
		if got := m.Stats().AcceptFailures; got != 4 {
			t.Fatalf("Stats().AcceptFailures = %d, want 4", got)
		}
	})
	t.Run("server", func(t *testing.T) {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := &emfileListener{Listener: tl}
		l.n.Store(4)
		srv := newServer(t, wire.ServerConfig{})
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		call(t, tl.Addr().String())
		srv.Close()
		if err := <-served; !errors.Is(err, wire.ErrClosed) {
			t.Fatalf("Serve = %v, want ErrClosed", err)
		}
	})
}

// TestServerCloseEndsAcceptBackoff: Close ends a Server's accept back-off
// at once, even at its longest (1s), rather than after it (the node's
// stop waited for it on a process out of descriptors).
func TestServerCloseEndsAcceptBackoff(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &emfileListener{Listener: tl}
	l.n.Store(1 << 30) // never accepts
	clk := clock.NewFake(time.Unix(1000, 0))
	srv := newServer(t, wire.ServerConfig{})
	wire.SetClock(srv, clk)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	// 5ms, 10ms, ... 640ms, then 1s: the ninth wait is the longest.
	for range 8 {
		waitFor(t, 10*time.Second, "the accept loop to wait", func() bool { return clk.Waiters() == 1 })
		clk.Advance(time.Second)
	}
	waitFor(t, 10*time.Second, "the accept loop to wait 1s", func() bool { return clk.Waiters() == 1 })
	srv.Close()
	select {
	case err := <-served:
		if !errors.Is(err, wire.ErrClosed) {
			t.Fatalf("Serve returned %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Close while backing off")
	}
}

// TestMuxPerAddrLimit: raft's connections may idle for ever, and one
// client that opened the raft limit's worth (sending the raft byte and
// nothing more) kept every peer's new raft connection out: a follower
// whose leader changed, or a restarted peer, could not reach it. With a
// per-address bound, one address holds at most that many; another address
// is still handed over, and loopback (a cluster on one machine) is bounded
// by the total alone.
func TestMuxPerAddrLimit(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := wiretest.FromListener{Listener: tl, From: make(chan net.Addr, 1)}
	m, err := wire.NewMux(l, wire.MuxConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.ListenLimits(8, -1, wire.ProtoRaft); err == nil {
		t.Fatal("a negative per-address limit was accepted")
	}
	ln, err := m.ListenLimits(8, 2, wire.ProtoRaft)
	if err != nil {
		t.Fatal(err)
	}
	go m.Serve()
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	// dial connects as from (nil: loopback) and reports whether the Mux
	// handed the connection over (true) or closed it (false).
	dial := func(from net.Addr) bool {
		t.Helper()
		if from != nil {
			l.From <- from
		}
		c, err := net.Dial("tcp", tl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write([]byte{wire.ProtoRaft})
		got := make(chan bool, 1)
		go func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Read(make([]byte, 1))
			got <- !errors.Is(err, io.EOF)
		}()
		select {
		case h := <-held:
			t.Cleanup(func() { h.Close() })
			return true
		case <-got:
			return false
		}
	}
	attacker := &net.TCPAddr{IP: net.ParseIP("10.0.0.6"), Port: 40000}
	for i := 0; i < 2; i++ {
		if !dial(attacker) {
			t.Fatalf("connection %d from one address was closed, under its limit of 2", i+1)
		}
	}
	if dial(attacker) {
		t.Fatal("a third connection from one address was handed over: one client can take every place")
	}
	if !dial(&net.TCPAddr{IP: net.ParseIP("10.0.0.2"), Port: 7947}) {
		t.Fatal("a peer's connection from another address was closed")
	}
	for i := 0; i < 3; i++ {
		if !dial(nil) {
			t.Fatalf("loopback connection %d was closed: loopback is bounded by the total alone", i+1)
		}
	}
	if st := m.Stats(); st.OverLimit != 1 {
		t.Fatalf("OverLimit = %d, want 1", st.OverLimit)
	}
}

// TestMuxPendingLimits: connections that have not sent their first byte
// are bounded, in all and per address (loopback by the total alone), and
// one beyond is closed as it is accepted. The protocols' limits count only
// connections handed to them, so a client that opened connections and
// sent nothing held one descriptor (and, behind TLS, a handshake) each
// for HandshakeTimeout, as many as it could open: 11,668 descriptors of a
// real node from one address, toward its open-file limit.
func TestMuxPendingLimits(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := wiretest.FromListener{Listener: tl, From: make(chan net.Addr, 1)}
	if _, err := wire.NewMux(l, wire.MuxConfig{MaxPendingPerAddr: -1}); err == nil {
		t.Fatal("a negative MaxPendingPerAddr was accepted")
	}
	m, err := wire.NewMux(l, wire.MuxConfig{HandshakeTimeout: time.Hour, MaxPending: 4, MaxPendingPerAddr: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ln, err := m.Listen(wire.ProtoRaft)
	if err != nil {
		t.Fatal(err)
	}
	go m.Serve()
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	// dial connects as from (nil: loopback) and sends nothing.
	dial := func(from net.Addr) net.Conn {
		t.Helper()
		if from != nil {
			l.From <- from
		}
		c, err := net.Dial("tcp", tl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	}
	handed := func(c net.Conn) {
		t.Helper()
		c.Write([]byte{wire.ProtoRaft})
		select {
		case h := <-held:
			h.Close()
		case <-time.After(10 * time.Second):
			t.Fatal("a pending connection was not handed over once it sent its byte")
		}
	}
	attacker := &net.TCPAddr{IP: net.ParseIP("10.0.0.6"), Port: 40000}
	a1, a2 := dial(attacker), dial(attacker)
	if !closed(dial(attacker)) {
		t.Fatal("a third silent connection from one address was kept: one client can hold as many as it opens")
	}
	peer := dial(&net.TCPAddr{IP: net.ParseIP("10.0.0.2"), Port: 7947})
	lo := dial(nil) // four pending now: a1, a2, peer, lo
	if !closed(dial(nil)) {
		t.Fatal("a fifth silent connection was kept over MaxPending")
	}
	if st := m.Stats(); st.OverLimit != 2 {
		t.Fatalf("OverLimit = %d, want 2", st.OverLimit)
	}
	for _, c := range []net.Conn{a1, a2, peer, lo} {
		handed(c)
	}
	handed(dial(attacker)) // its place is free again
}
