package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/proxy/internal/hostile"
)

var (
	lo1 = netip.MustParseAddr("127.0.0.1")
	lo2 = netip.MustParseAddr("127.0.0.2")
)

// dialFrom dials addr from the local address from (a loopback address
// other than 127.0.0.1 is a second client).
func dialFrom(t testing.TB, from netip.Addr, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from.AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// servedFrom sends a keep-alive GET from from and reads the answer; the
// connection stays open (closed when the test ends).
func servedFrom(t testing.TB, from netip.Addr, addr string) net.Conn {
	t.Helper()
	c := dialFrom(t, from, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n")
	if err := readRawResponse(bufio.NewReader(c)); err != nil {
		t.Fatalf("a connection from %s was not served: %v", from, err)
	}
	c.SetDeadline(time.Time{})
	return c
}

// refusedFrom sends a GET from from and wants the connection reset
// without an answer.
func refusedFrom(t testing.TB, from netip.Addr, addr string) {
	t.Helper()
	c := dialFrom(t, from, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n")
	b, err := io.ReadAll(c)
	if len(b) > 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a connection from %s over the cap: read %q, %v; want a reset and nothing", from, b, err)
	}
	c.Close()
}

func refusedCount[C any](s *Server[C]) float64 {
	return counterValue(s.metrics.connsRefused.WithLabelValues(refusedPerIP))
}

// waitReleased waits for every count of s to be released.
func waitReleased[C any](t testing.TB, s *Server[C]) {
	t.Helper()
	waitFor(t, 10*time.Second, "every per-address count released", func() bool { return s.perIP.addresses() == 0 })
}

func TestIPKey(t *testing.T) {
	key := func(s string) ipKey {
		k, ok := ipKeyOf(net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(s), 443)))
		if !ok {
			t.Fatalf("%s: no key", s)
		}
		return k
	}
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"192.0.2.7", "::ffff:192.0.2.7", true},                       // IPv4-mapped IPv6 is the IPv4 client
		{"192.0.2.7", "192.0.2.8", false},                             // IPv4 counts per address
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true}, // one /64
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"2001:db8:1:2::1", "2001:db9:1:2::1", false},
		{"::1", "::2", true},
		{"::ffff:192.0.2.7", "::ffff:192.0.2.8", false}, // not grouped as IPv6 /64
		{"::192.0.2.7", "192.0.2.7", false},             // IPv4-compatible (deprecated) is IPv6
	} {
		if got := key(tc.a) == key(tc.b); got != tc.same {
			t.Errorf("%s and %s: same key %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
	// A zone does not matter: the key is the address's.
	if key("fe80::1%lo") != key("fe80::2") {
		t.Error("fe80::1%lo and fe80::2 differ")
	}
	for in, want := range map[string]string{"192.0.2.7": "192.0.2.7", "::ffff:10.1.2.3": "10.1.2.3", "2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64", "::1": "::/64"} {
		if got := key(in).String(); got != want {
			t.Errorf("key(%s) = %s, want %s", in, got, want)
		}
	}
	if ipKeyOfAddr(netip.MustParseAddr("2001:db8::9")) != key("2001:db8::1") || ipKeyOfAddr(lo1) != key("::ffff:127.0.0.1") {
		t.Error("ipKeyOfAddr differs from ipKeyOf")
	}
	if _, ok := ipKeyOf(&net.UnixAddr{Name: "/x", Net: "unix"}); ok {
		t.Error("a Unix socket address has a key")
	}
	if _, ok := ipKeyOf(&net.TCPAddr{}); ok {
		t.Error("a TCP address without an IP has a key")
	}
}

// TestPerIPConnsCounts: the counts themselves. An address is admitted up
// to the cap, refused beyond it, admitted again after a release; an entry
// goes at 0; a refusal is counted every time and logged at most once a
// minute an address, with the refusals since.
func TestPerIPConnsCounts(t *testing.T) {
	m, err := newMetrics(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	p := newPerIPConns(2, m, slog.New(slog.NewTextHandler(&logged, nil)))
	now := time.Unix(1e9, 0)
	p.now = func() time.Time { return now }
	a := ipKeyOfAddr(netip.MustParseAddr("192.0.2.1"))
	b := ipKeyOfAddr(netip.MustParseAddr("2001:db8::1"))
	b2 := ipKeyOfAddr(netip.MustParseAddr("2001:db8::2"))
	if !p.acquire(a, "l") || !p.acquire(a, "l") || !p.acquire(b, "l") || !p.acquire(b2, "l") {
		t.Fatal("refused under the cap")
	}
	if p.acquire(a, "l") || p.acquire(b, "l") {
		t.Fatal("admitted over the cap (the IPv6 one's /64 has two)")
	}
	if p.open(a) != 2 || p.open(b) != 2 || p.addresses() != 2 {
		t.Fatalf("counts %d %d over %d addresses, want 2 2 over 2", p.open(a), p.open(b), p.addresses())
	}
	for range 5 {
		p.acquire(a, "l")
	}
	if got := counterValue(p.refused); got != 7 {
		t.Fatalf("refused counter %v, want 7", got)
	}
	if n := strings.Count(logged.String(), "level=WARN"); n != 2 {
		t.Fatalf("%d lines logged for 7 refusals from 2 addresses, want 2 (one each):\n%s", n, logged.String())
	}
	if !strings.Contains(logged.String(), "client=192.0.2.1") || !strings.Contains(logged.String(), "client=2001:db8::/64") {
		t.Fatalf("the lines do not name the addresses:\n%s", logged.String())
	}
	now = now.Add(perIPWarnEvery)
	logged.Reset()
	p.acquire(a, "l")
	if !strings.Contains(logged.String(), "refused_since_last_line=6") {
		t.Fatalf("a minute on: %q, want a line counting the 6 refusals since the last", logged.String())
	}
	p.release(a)
	if !p.acquire(a, "l") {
		t.Fatal("refused after a release")
	}
	for _, k := range []ipKey{a, a, b, b2} {
		p.release(k)
	}
	if p.addresses() != 0 {
		t.Fatalf("%d addresses kept with nothing open, want 0", p.addresses())
	}
	if newPerIPConns(0, m, nil) != nil {
		t.Fatal("a cap of 0 made counts")
	}
}

// TestMaxConnsPerIP: over the cap, connections from 127.0.0.1 are reset as
// they are accepted and counted, while 127.0.0.2 still connects; refused
// connections hold no MaxConns slot (127.0.0.2 gets the last one after
// many refusals); after the first address's connections close it gets in
// again.
func TestMaxConnsPerIP(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{Downstream: DownstreamConfig{MaxConnsPerIP: 2, MaxConns: 3}}, ListenerConfig{Name: "http"})
	held := []net.Conn{servedFrom(t, lo1, p.addr), servedFrom(t, lo1, p.addr)}
	if n := p.srv.connsFromIP(lo1); n != 2 {
		t.Fatalf("count of 127.0.0.1 = %d, want 2", n)
	}
	for range 10 {
		refusedFrom(t, lo1, p.addr)
	}
	if got := refusedCount(p.srv); got != 10 {
		t.Fatalf("refused %v, want 10", got)
	}
	servedFrom(t, lo2, p.addr) // the third and last MaxConns slot
	if a, b := p.srv.connsFromIP(lo1), p.srv.connsFromIP(lo2); a != 2 || b != 1 {
		t.Fatalf("counts %d and %d, want 2 and 1", a, b)
	}
	for _, c := range held {
		c.Close()
	}
	waitFor(t, 10*time.Second, "127.0.0.1's count released", func() bool { return p.srv.connsFromIP(lo1) == 0 })
	servedFrom(t, lo1, p.addr)
	if p.srv.perIP.addresses() != 2 {
		t.Fatalf("%d addresses counted, want 2", p.srv.perIP.addresses())
	}
}

// TestMaxConnsPerIPOff: without the cap nothing is counted and one
// address may open more than any cap would allow.
func TestMaxConnsPerIPOff(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http"})
	for range 5 {
		servedFrom(t, lo1, p.addr)
	}
	if p.srv.perIP != nil || p.srv.connsFromIP(lo1) != 0 {
		t.Fatal("counted without a cap")
	}
}

// TestMaxConnsPerIPTrustedProxy: a listener's trusted proxies are not
// counted: a load balancer carries many clients' connections.
func TestMaxConnsPerIPTrustedProxy(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{Downstream: DownstreamConfig{MaxConnsPerIP: 1}},
		ListenerConfig{Name: "http", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	for range 3 {
		servedFrom(t, lo2, p.addr)
	}
	servedFrom(t, lo1, p.addr)
	refusedFrom(t, lo1, p.addr)
	if p.srv.connsFromIP(lo2) != 0 {
		t.Fatal("the trusted proxy was counted")
	}
}

// TestMaxConnsPerIPConnWorkerReuse: a cap of 1 and connections one after
// another, each served by the worker the one before left waiting: a count
// that any of them leaked would refuse the next.
func TestMaxConnsPerIPConnWorkerReuse(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{Downstream: DownstreamConfig{MaxConnsPerIP: 1}}, ListenerConfig{Name: "http"})
	for i := range 30 {
		c := servedFrom(t, lo1, p.addr)
		c.Close()
		waitFor(t, 10*time.Second, "the count released", func() bool { return p.srv.connsFromIP(lo1) == 0 })
		if i == 0 {
			waitFor(t, 5*time.Second, "the worker waiting for the next connection", func() bool { return p.srv.idleWorkers.Load() == 1 })
		}
	}
	waitFor(t, 5*time.Second, "a worker waiting for the next connection", func() bool { return p.srv.idleWorkers.Load() >= 1 })
	if got := refusedCount(p.srv); got != 0 {
		t.Fatalf("refused %v connections, want none", got)
	}
	waitReleased(t, p.srv)
}

// TestMaxConnsPerIPReleasePaths: the count is released once a connection
// ends, however it ends: a client that closes mid-request, a header
// timeout, an HTTP/2 (h2c) connection, a WebSocket-style tunnel, an
// abrupt Close of the server.
func TestMaxConnsPerIPReleasePaths(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	cfg := Config{Downstream: DownstreamConfig{MaxConnsPerIP: 1, HeaderTimeout: 300 * time.Millisecond}}
	lc := ListenerConfig{Name: "http", H2C: true}

	t.Run("client gone mid-head", func(t *testing.T) {
		p := startProxy(t, routerFor(t, &Peer{Addr: origin}), cfg, lc)
		c := dialFrom(t, lo1, p.addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHo")
		waitFor(t, 5*time.Second, "counted", func() bool { return p.srv.connsFromIP(lo1) == 1 })
		c.Close()
		waitReleased(t, p.srv)
		servedFrom(t, lo1, p.addr)
	})
	t.Run("h2c preface cut short", func(t *testing.T) {
		p := startProxy(t, routerFor(t, &Peer{Addr: origin}), cfg, lc)
		c := dialFrom(t, lo1, p.addr)
		io.WriteString(c, "PRI * HTTP/2.0\r\n")
		waitFor(t, 5*time.Second, "counted", func() bool { return p.srv.connsFromIP(lo1) == 1 })
		c.Close()
		waitReleased(t, p.srv)
	})
	t.Run("header timeout", func(t *testing.T) {
		p := startProxy(t, routerFor(t, &Peer{Addr: origin}), cfg, lc)
		c := dialFrom(t, lo1, p.addr)
		io.WriteString(c, "GET / HTTP/1.1\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("after the header timeout: %v %v, want 408", resp, err)
		}
		waitReleased(t, p.srv)
	})
	t.Run("h2c", func(t *testing.T) {
		p := startProxy(t, routerFor(t, &Peer{Addr: origin}), cfg, lc)
		cl := h2cClient()
		resp, body := mustGet(t, cl, "http://"+p.addr+"/")
		if resp.ProtoMajor != 2 || body != "ok" {
			t.Fatalf("h2c: %s %q", resp.Proto, body)
		}
		if n := p.srv.connsFromIP(lo1); n != 1 {
			t.Fatalf("count during the HTTP/2 connection %d, want 1", n)
		}
		cl.CloseIdleConnections()
		waitReleased(t, p.srv)
	})
	t.Run("tunnel", func(t *testing.T) {
		app := routeWith(t, RouteConfig{Upgrades: []string{"echo"}}, upgradeOrigin(t))
		p := startProxy(t, app, cfg, ListenerConfig{Name: "http"})
		c := dialFrom(t, lo1, p.addr)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		io.WriteString(c, "hello")
		got := make([]byte, 5)
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatal(err)
		}
		if n := p.srv.connsFromIP(lo1); n != 1 {
			t.Fatalf("count during the tunnel %d, want 1", n)
		}
		refusedFrom(t, lo1, p.addr) // the tunnel holds the address's one connection
		c.(*net.TCPConn).CloseWrite()
		io.ReadAll(br) // "bye", then the tunnel ends
		waitReleased(t, p.srv)
		c = dialFrom(t, lo1, p.addr) // admitted again (the origin answers 400 without an upgrade)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatalf("after the tunnel: %v", err)
		} else if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("after the tunnel: status %d, want the origin's 400", resp.StatusCode)
		}
	})
	t.Run("Close", func(t *testing.T) {
		p := startProxy(t, routerFor(t, &Peer{Addr: origin}), cfg, lc)
		servedFrom(t, lo1, p.addr)
		servedFrom(t, lo2, p.addr)
		p.srv.Close()
		waitReleased(t, p.srv)
	})
}

// TestMaxConnsPerIPTLS: over TLS the count is taken before the handshake
// (an over-cap client gets no handshake at all) and released when a
// handshake fails, a client leaves mid-handshake, or a TLS connection of
// either protocol ends.
func TestMaxConnsPerIPTLS(t *testing.T) {
	ca := newTestCA(t)
	certs, err := NewCertStoreFromCerts([]tls.Certificate{ca.issue(t, "a.test")})
	if err != nil {
		t.Fatal(err)
	}
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{Downstream: DownstreamConfig{MaxConnsPerIP: 1}}, ListenerConfig{Name: "https", TLS: certs})

	// Plain HTTP to the TLS port: the handshake fails.
	c := dialFrom(t, lo1, p.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n")
	io.ReadAll(c)
	waitReleased(t, p.srv)

	// A ClientHello cut short, then gone.
	c = dialFrom(t, lo1, p.addr)
	c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
	waitFor(t, 5*time.Second, "counted", func() bool { return p.srv.connsFromIP(lo1) == 1 })
	refusedFrom(t, lo1, p.addr) // no handshake for the one over the cap
	c.Close()
	waitReleased(t, p.srv)

	for _, h2 := range []bool{false, true} {
		cl := tlsClient(ca.pool, "a.test", h2)
		resp, body := mustGet(t, cl, "https://"+p.addr+"/")
		if body != "ok" || (resp.ProtoMajor == 2) != h2 {
			t.Fatalf("TLS h2=%v: %s %q", h2, resp.Proto, body)
		}
		if n := p.srv.connsFromIP(lo1); n != 1 {
			t.Fatalf("count during the TLS connection %d, want 1", n)
		}
		cl.CloseIdleConnections()
		waitReleased(t, p.srv)
	}
}

// TestMaxConnsPerIPHandoff: a graceful upgrade. The old server drains the
// connections it holds and releases their counts; the successor, serving
// the same listening socket, counts from nothing (each process counts its
// own connections).
func TestMaxConnsPerIPHandoff(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	cfg := Config{Downstream: DownstreamConfig{MaxConnsPerIP: 2, DrainLinger: 20 * time.Millisecond}}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	old, err := New[struct{}](routerFor(t, &Peer{Addr: origin}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	oldDone := make(chan error, 1)
	go func() { oldDone <- old.Serve(ln, ListenerConfig{Name: "http"}) }()
	servedFrom(t, lo1, addr)
	servedFrom(t, lo1, addr)
	refusedFrom(t, lo1, addr)

	// The hand-off: the successor gets a copy of the listening socket.
	f, err := ln.(*acceptListener).File()
	if err != nil {
		t.Fatal(err)
	}
	inherited, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	lnNew, err := AdoptListener(inherited)
	if err != nil {
		t.Fatal(err)
	}
	successor, err := New[struct{}](routerFor(t, &Peer{Addr: origin}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := old.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-oldDone
	waitReleased(t, old)
	newDone := make(chan error, 1)
	go func() { newDone <- successor.Serve(lnNew, ListenerConfig{Name: "http"}) }()
	defer func() {
		successor.Shutdown(ctx)
		<-newDone
	}()
	servedFrom(t, lo1, addr)
	servedFrom(t, lo1, addr)
	refusedFrom(t, lo1, addr)
	if n := successor.connsFromIP(lo1); n != 2 {
		t.Fatalf("the successor counts %d, want 2", n)
	}
}

// TestMaxConnsPerIPAcceptedDuringShutdown: a connection accepted just as
// Shutdown closed the listener is served and its count released.
func TestMaxConnsPerIPAcceptedDuringShutdown(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	srv, err := New[struct{}](routerFor(t, &Peer{Addr: origin}), Config{Downstream: DownstreamConfig{MaxConnsPerIP: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := &gateListener{Listener: ln, gate: make(chan struct{}), accepted: make(chan struct{}, 1)}
	go srv.Serve(gl, ListenerConfig{Name: "http"})
	c := dialFrom(t, lo1, ln.Addr().String())
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-gl.accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not accepted within 5 s")
	}
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- srv.Shutdown(ctx)
	}()
	waitFor(t, 5*time.Second, "draining", srv.Draining)
	close(gl.gate)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := readRawResponse(bufio.NewReader(c)); err != nil {
		t.Fatalf("late connection not answered: %v", err)
	}
	if err := <-shutdown; err != nil {
		t.Fatal(err)
	}
	waitReleased(t, srv)
}

func TestConfigMaxConnsPerIPValidate(t *testing.T) {
	err := Config{Downstream: DownstreamConfig{MaxConnsPerIP: -1}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "Downstream.MaxConnsPerIP (-1) cannot be negative") {
		t.Fatalf("a negative MaxConnsPerIP: %v", err)
	}
	if _, err := New[struct{}](routerFor(t, &Peer{Addr: "127.0.0.1:1"}), Config{Downstream: DownstreamConfig{MaxConnsPerIP: -3}}); err == nil {
		t.Fatal("New took a negative MaxConnsPerIP")
	}
	if err := (Config{Downstream: DownstreamConfig{MaxConnsPerIP: 10}}).Validate(); err != nil {
		t.Fatal(err)
	}
	if got := DefaultConfig().Downstream.MaxConnsPerIP; got != 0 {
		t.Fatalf("default MaxConnsPerIP %d, want 0 (off)", got)
	}
}

// BenchmarkConnsPerIP measures what the cap costs each connection at the
// accept and at its end: off (the one branch Serve takes), on with every
// connection from one address, and on with connections from many
// addresses on every core.
func BenchmarkConnsPerIP(b *testing.B) {
	m, err := newMetrics(prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	lc := &ListenerConfig{Name: "http"}
	one := &fakeAddrConn{addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7).To4(), Port: 40000}}
	b.Run("off", func(b *testing.B) {
		s := &Server[struct{}]{}
		c := &clientConn{}
		b.ReportAllocs()
		for b.Loop() {
			if s.perIP != nil {
				k, counted, _ := s.admitPerIP(one, lc)
				c.ipKey, c.ipCounted = k, counted
			}
			s.releasePerIP(c)
		}
	})
	on := func(b *testing.B, conns []*fakeAddrConn, parallel bool) {
		s := &Server[struct{}]{perIP: newPerIPConns(1<<20, m, slog.New(slog.NewTextHandler(io.Discard, nil)))}
		run := func(i int, c *clientConn) {
			nc := conns[i%len(conns)]
			if s.perIP != nil {
				k, counted, _ := s.admitPerIP(nc, lc)
				c.ipKey, c.ipCounted = k, counted
			}
			s.releasePerIP(c)
		}
		b.ReportAllocs()
		if !parallel {
			c := &clientConn{}
			i := 0
			for b.Loop() {
				run(i, c)
				i++
			}
			return
		}
		var start atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			c := &clientConn{}
			i := int(start.Add(1)) * 1021 // each goroutine on its own addresses
			for pb.Next() {
				run(i, c)
				i++
			}
		})
	}
	b.Run("on/one-address", func(b *testing.B) { on(b, []*fakeAddrConn{one}, false) })
	var many []*fakeAddrConn
	for i := range 4096 {
		ip := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).To4()
		if i%2 == 1 {
			ip = net.ParseIP("2001:db8::").To16()
			ip[5], ip[6], ip[7], ip[15] = byte(i>>8), byte(i), 1, byte(i)
		}
		many = append(many, &fakeAddrConn{addr: &net.TCPAddr{IP: ip, Port: 40000}})
	}
	b.Run("on/many-addresses", func(b *testing.B) { on(b, many, false) })
	b.Run("on/many-addresses-parallel", func(b *testing.B) { on(b, many, true) })
}

// fakeAddrConn is a net.Conn with a remote address and nothing else.
type fakeAddrConn struct {
	net.Conn
	addr net.Addr
}

func (c *fakeAddrConn) RemoteAddr() net.Addr { return c.addr }

// TestMaxConnsPerIPDualStack: on a dual-stack listener an IPv4 client
// arrives as an IPv4-mapped IPv6 address and is counted as the IPv4 one;
// an IPv6 client is counted by its /64.
func TestMaxConnsPerIPDualStack(t *testing.T) {
	ln, err := Listen("[::]:0")
	if err != nil {
		t.Skipf("no dual-stack listener here: %v", err)
	}
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := startProxyOn(t, routerFor(t, &Peer{Addr: origin}), Config{Downstream: DownstreamConfig{MaxConnsPerIP: 1}}, ListenerConfig{Name: "http"}, ln)
	port := ln.Addr().(*net.TCPAddr).Port
	v4 := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	servedFrom(t, lo1, v4)
	if n := p.srv.connsFromIP(lo1); n != 1 {
		t.Fatalf("the IPv4 client over IPv6 counts %d as 127.0.0.1, want 1", n)
	}
	refusedFrom(t, lo1, v4)
	v6 := net.JoinHostPort("::1", strconv.Itoa(port))
	lo6 := netip.MustParseAddr("::1")
	if probe, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Logf("no IPv6 loopback: %v", err)
		return
	} else {
		probe.Close()
	}
	servedFrom(t, lo6, v6)
	if n := p.srv.connsFromIP(netip.MustParseAddr("::abcd")); n != 1 {
		t.Fatalf("::abcd, in ::1's /64, counts %d, want 1", n)
	}
	refusedFrom(t, lo6, v6)
}

// TestMaxConnsPerIPH2Streams: the HTTP/2 streams being served count
// against max_conns_per_ip as connections do (nginx's limit_conn counts
// each concurrent HTTP/2 request): the first rides on its connection's
// count, each further one takes one of its own, and one over the cap is
// answered 503. Before, one connection's 250 streams (each with an
// upstream connection of its own) counted as one: 8 connections from one
// address held 2000 upstream sockets. Once the streams end, only the
// connection is counted, and new streams are served.
func TestMaxConnsPerIPH2Streams(t *testing.T) {
	release := make(chan struct{})
	var inFlight atomic.Int32
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			inFlight.Add(1)
			<-release
		}
		io.WriteString(w, "ok")
	}))
	var released sync.Once
	free := func() { released.Do(func() { close(release) }) }
	t.Cleanup(free) // before the origin's close, which waits for its handlers
	p := startProxy(t, routerFor(t, origin), Config{Downstream: DownstreamConfig{MaxConnsPerIP: 3}}, ListenerConfig{Name: "http", H2C: true})
	c, err := hostile.NewH2Conn(dialTCP(t, p.addr), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) uint32 {
		t.Helper()
		id, err := c.Send(hostile.Fields(":method", "GET", ":scheme", "http", ":path", path, ":authority", "x"), false)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	for range 3 { // the connection's own count, and two more
		get("/hold")
	}
	waitFor(t, 10*time.Second, "three streams at the origin", func() bool { return inFlight.Load() == 3 })
	if n := p.srv.connsFromIP(lo1); n != 3 {
		t.Fatalf("count of 127.0.0.1 = %d with one connection and three streams, want 3", n)
	}
	o, err := c.Await(get("/hold"))
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != "503" {
		t.Fatalf("a fourth stream: %v, want 503", o)
	}
	if got := refusedCount(p.srv); got != 1 {
		t.Fatalf("refused %v, want 1", got)
	}
	refusedFrom(t, lo1, p.addr) // a new connection is over the cap too
	free()
	waitFor(t, 10*time.Second, "the streams' counts released", func() bool { return p.srv.connsFromIP(lo1) == 1 })
	if o, err := c.Await(get("/")); err != nil || o.Status != "200" {
		t.Fatalf("a stream after the others ended: %v %v", o, err)
	}
}

// TestMaxConnsPerIPH2StreamsStaggered: the streams of one HTTP/2
// connection count as many as run at once, whichever of them began first.
// The first stream rode on the connection's count and kept that place to
// itself: once it ended, every stream begun while another still ran took a
// count of its own, so two streams at a time cost three counts, and a
// client with max_conns_per_ip 2 and one connection was answered 503 for
// its second concurrent stream as soon as the first stream it had ever
// opened had ended (a browser's staggered requests).
func TestMaxConnsPerIPH2StreamsStaggered(t *testing.T) {
	releaseA, releaseB := make(chan struct{}), make(chan struct{})
	var atA, atB atomic.Int32
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/a":
			atA.Add(1)
			<-releaseA
		case "/b":
			atB.Add(1)
			<-releaseB
		}
		io.WriteString(w, "ok")
	}))
	var onceA, onceB sync.Once
	freeA := func() { onceA.Do(func() { close(releaseA) }) }
	freeB := func() { onceB.Do(func() { close(releaseB) }) }
	t.Cleanup(freeA)
	t.Cleanup(freeB)
	p := startProxy(t, routerFor(t, origin), Config{Downstream: DownstreamConfig{MaxConnsPerIP: 2}}, ListenerConfig{Name: "http", H2C: true})
	c, err := hostile.NewH2Conn(dialTCP(t, p.addr), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) uint32 {
		t.Helper()
		id, err := c.Send(hostile.Fields(":method", "GET", ":scheme", "http", ":path", path, ":authority", "x"), false)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a := get("/a") // the connection's first stream
	waitFor(t, 10*time.Second, "stream a at the origin", func() bool { return atA.Load() == 1 })
	get("/b") // a second one at once: the cap's second count
	waitFor(t, 10*time.Second, "stream b at the origin", func() bool { return atB.Load() == 1 })
	if n := p.srv.connsFromIP(lo1); n != 2 {
		t.Fatalf("count of 127.0.0.1 = %d with one connection and two streams, want 2", n)
	}
	freeA()
	if o, err := c.Await(a); err != nil || o.Status != "200" {
		t.Fatalf("stream a: %v %v", o, err)
	}
	// b runs alone now: a stream beside it is two at once, within the cap.
	// (Asked again until a's end has been counted, which follows its
	// answer.)
	var last string
	waitFor(t, 5*time.Second, "a stream beside b served (503 each time)", func() bool {
		o, err := c.Await(get("/"))
		if err != nil {
			t.Fatal(err)
		}
		last = o.Status
		return o.Status == "200"
	})
	if last != "200" {
		t.Fatalf("a second stream at a time: %s", last)
	}
	waitFor(t, 10*time.Second, "one stream and the connection counted", func() bool { return p.srv.connsFromIP(lo1) <= 2 })
	freeB()
	waitFor(t, 10*time.Second, "the streams' counts released", func() bool { return p.srv.connsFromIP(lo1) == 1 })
}
