package proxy

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"
)

// oneRequest sends a keep-alive GET on a new connection and reads the
// answer; the connection stays open for the caller to close.
func oneRequest(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: t\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := readRawResponse(bufio.NewReader(c)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConnWorkerReused: the goroutine that served a connection serves the
// next one instead of ending, and a draining server ends it.
func TestConnWorkerReused(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http"})
	idle := func() int32 { return p.srv.idleWorkers.Load() }

	oneRequest(t, p.addr).Close()
	waitFor(t, 5*time.Second, "one idle worker", func() bool { return idle() == 1 })

	c := oneRequest(t, p.addr) // served by the idle worker: none idle while it runs
	if n := idle(); n != 0 {
		t.Fatalf("idle workers while the second connection is served = %d, want 0 (a new goroutine served it)", n)
	}
	c.Close()
	waitFor(t, 5*time.Second, "the worker idle again", func() bool { return p.srv.ActiveConns() == 0 && idle() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an idle worker: %v", err)
	}
	if n := idle(); n != 0 {
		t.Fatalf("idle workers after Shutdown = %d, want 0", n)
	}
}

// TestConnWorkersCapped: at most maxIdleWorkers goroutines stay waiting
// after a burst of connections; the others end.
func TestConnWorkersCapped(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http"})
	var conns []net.Conn
	for range maxIdleWorkers + 8 { // all open at once: one goroutine each
		conns = append(conns, oneRequest(t, p.addr))
	}
	if n := p.srv.idleWorkers.Load(); n != 0 {
		t.Fatalf("idle workers with every connection open = %d, want 0", n)
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, 10*time.Second, "every connection ended", func() bool { return p.srv.ActiveConns() == 0 })
	waitFor(t, 5*time.Second, "the idle workers counted", func() bool { return p.srv.idleWorkers.Load() == maxIdleWorkers })
}
