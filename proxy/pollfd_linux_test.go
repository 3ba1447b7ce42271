//go:build linux

package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestPollFDJoinsToWait: an accepted socket stays out of the runtime's
// poller while its reads find data and its writes find room, joins it
// when a read has to wait, and that read then gets what comes later.
func TestPollFDJoinsToWait(t *testing.T) {
	c, peer := acceptedPair(t)
	if c.p.joined() {
		t.Fatal("an accepted socket whose first byte was read joined the poller")
	}
	peer.Write([]byte("request"))
	waitData(t, c)
	b := make([]byte, 7)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "request" {
		t.Fatalf("read %q, %v", b, err)
	}
	if _, err := c.Write([]byte("response")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute)) // recorded, not armed
	if c.p.joined() {
		t.Fatal("a read that found data, a write that found room and a future deadline joined the poller")
	}
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 4)
		_, err := io.ReadFull(c, b)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	}()
	waitFor(t, 10*time.Second, "the read to join the poller and wait", func() bool { return c.p.joined() && c.rdl.isWaiting() })
	peer.Write([]byte("next"))
	select {
	case s := <-got:
		if s != "next" {
			t.Fatalf("the waiting read got %q, want \"next\"", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read waiting in the poller missed the bytes that came")
	}
	if a := c.rdl.armedAt(); a.IsZero() {
		t.Fatal("the read waited without its deadline on the poller")
	}
	pb := make([]byte, 8)
	if _, err := io.ReadFull(peer, pb); err != nil || string(pb) != "response" {
		t.Fatalf("peer read %q, %v", pb, err)
	}
}

// TestPollFDCloseNeverJoined: a socket closed before it joined the poller
// is closed (the peer reads EOF), and the connection then fails as a
// closed *net.TCPConn does.
func TestPollFDCloseNeverJoined(t *testing.T) {
	c, peer := acceptedPair(t)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c.p.joined() {
		t.Fatal("Close joined the poller")
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read after Close: %v, want EOF", err)
	}
	for name, err := range map[string]error{
		"Close":           c.Close(),
		"Read":            func() error { _, err := c.Read(make([]byte, 1)); return err }(),
		"Write":           func() error { _, err := c.Write([]byte("x")); return err }(),
		"SetReadDeadline": c.SetReadDeadline(time.Now().Add(-time.Second)),
		"CloseWrite":      c.CloseWrite(),
	} {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v, want net.ErrClosed", name, err)
		}
	}
}

// TestPollFDDeadlineAfterClose: a deadline set on a socket that had
// joined the poller and has been closed fails with net.ErrClosed and
// reaches no poll descriptor. Closing gives the socket's descriptor back
// to the runtime, which hands it to the next socket to join (its cache is
// last in, first out): a deadline set through the closed connection landed
// on that socket, and a past one (how the proxy interrupts a connection)
// failed its next read, another client's.
func TestPollFDDeadlineAfterClose(t *testing.T) {
	c, _ := acceptedPair(t)
	other, peer := acceptedPair(t) // not joined yet: it joins right after c's close
	if err := c.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil { // joins, and arms
		t.Fatal(err)
	}
	old := c.p.pd.Load()
	if old == 0 {
		t.Fatal("a past deadline did not join the poller")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.SetReadDeadline(time.Now().Add(-time.Second)); err != nil { // joins
		t.Fatal(err)
	}
	if err := other.SetReadDeadline(time.Time{}); err != nil { // joined, no deadline
		t.Fatal(err)
	}
	reused := other.p.pd.Load() == old
	for name, set := range map[string]func(time.Time) error{"read": c.SetReadDeadline, "write": c.SetWriteDeadline, "both": c.SetDeadline} {
		if err := set(time.Now().Add(-time.Second)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s deadline on a closed connection: %v, want net.ErrClosed", name, err)
		}
	}
	peer.Write([]byte("data"))
	waitData(t, other)
	if _, err := io.ReadFull(other, make([]byte, 4)); err != nil {
		t.Fatalf("a read on another connection (poll descriptor reused: %v) after deadlines were set on a closed one: %v", reused, err)
	}
	if _, err := other.Write([]byte("x")); err != nil {
		t.Fatalf("a write on another connection (poll descriptor reused: %v): %v", reused, err)
	}
}

// TestPollFDPastDeadline: a deadline set in the past on a socket that has
// not joined the poller (how the proxy interrupts a connection) joins it
// and fails the next read, with data there or not.
func TestPollFDPastDeadline(t *testing.T) {
	c, peer := acceptedPair(t)
	peer.Write([]byte("data"))
	waitData(t, c)
	if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if !c.p.joined() {
		t.Fatal("a past deadline did not reach the poller")
	}
	if _, err := c.Read(make([]byte, 4)); !isDeadline(err) {
		t.Fatalf("read under a past deadline: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatalf("read after the deadline was cleared: %v", err)
	}
}

// TestPollFDCloseRaces closes connections while other goroutines read,
// write and set deadlines on them, joined or not, for the race detector
// and for what each sees: data, or net.ErrClosed once closed, and the
// peer always sees the close.
func TestPollFDCloseRaces(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i := range 100 {
		sc, cc := acceptOne(t, ln)
		var wg sync.WaitGroup
		fail := make(chan error, 3)
		wg.Add(3)
		go func() { // reads until closed; waits in the poller once x is read
			defer wg.Done()
			for {
				if _, err := sc.Read(make([]byte, 1)); err != nil {
					if !errors.Is(err, net.ErrClosed) {
						fail <- err
					}
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for {
				if _, err := sc.Write([]byte("y")); err != nil {
					if !errors.Is(err, net.ErrClosed) {
						fail <- err
					}
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				sc.SetDeadline(time.Now().Add(time.Minute))
			}
			sc.Close()
		}()
		wg.Wait()
		close(fail)
		for err := range fail {
			t.Fatalf("connection %d: %v", i, err)
		}
		// EOF, or a reset when the close left the "x" unread.
		cc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, cc); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("connection %d: the peer did not see the close: %v", i, err)
		}
		cc.Close()
	}
}

// TestNewConnOutOfPoller: a client that sends its request with the
// connection and asks to close after the response (Connection: close)
// is served without its socket ever joining the runtime's poller: no
// fcntl, epoll_ctl(ADD) or epoll_ctl(DEL) for it. A request that runs
// as long as clientWatchDelay starts the client watch, which waits on
// the socket; only requests well under it are counted.
func TestNewConnOutOfPoller(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, ok := ln.(*acceptListener)
	if !ok {
		t.Fatalf("Listen gave a %T", ln)
	}
	p := startProxyOn(t, routerFor(t, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http"}, ln)
	counted := 0
	for range 20 {
		before := al.joins.Load()
		start := time.Now()
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		if err := readRawResponse(br); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := br.ReadByte(); err != io.EOF { // the server closed it
			t.Fatalf("after the response: %v, want EOF", err)
		}
		c.Close()
		waitFor(t, 10*time.Second, "the connection to end", func() bool { return p.srv.ActiveConns() == 0 })
		if time.Since(start) > clientWatchDelay/2 {
			continue
		}
		counted++
		if n := al.joins.Load() - before; n != 0 {
			t.Fatalf("a Connection: close request served in %v joined the poller", time.Since(start))
		}
	}
	if counted == 0 {
		t.Skip("every request ran too long to tell (a loaded machine)")
	}
	// A keep-alive client's socket joins once, when the server waits for
	// its next request.
	c := oneRequest(t, p.addr)
	defer c.Close()
	waitFor(t, 10*time.Second, "the keep-alive socket to join the poller", func() bool { return al.joins.Load() > 0 })
}

// joinedPair is acceptedPair with the accepted socket in the poller (a
// read has waited on it) and nothing left to read.
func joinedPair(t *testing.T) (*tcpConn, net.Conn) {
	t.Helper()
	c, peer := acceptedPair(t)
	c.SetReadDeadline(time.Now().Add(time.Minute))
	go func() {
		waitFor(t, 10*time.Second, "the read to wait", func() bool { return c.p.joined() && c.rdl.isWaiting() })
		peer.Write([]byte("j"))
	}()
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return c, peer
}

// TestPollFDWaitFirst: a read after a short one (the socket drained) waits
// for readiness before it reads, and still gets bytes that came in between
// (before the wait began) or after, at once; a read after a full one asks
// the socket first, and so gets what is still queued without any new byte
// coming (a read that waited there would wait forever: no new readiness).
func TestPollFDWaitFirst(t *testing.T) {
	c, peer := joinedPair(t)
	read := func(n int) string {
		t.Helper()
		c.waitFirstNext(true)
		b := make([]byte, n)
		m, err := c.Read(b)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(b[:m])
	}

	// Bytes that came between a short read and the next read.
	peer.Write([]byte("ab"))
	waitData(t, c)
	if got := read(10); got != "ab" {
		t.Fatalf("read %q, want \"ab\"", got)
	}
	if !c.p.drained.Load() {
		t.Fatal("a short read did not mark the socket drained")
	}
	peer.Write([]byte("cd"))
	waitData(t, c)
	if got := read(10); got != "cd" {
		t.Fatalf("a read that waited first got %q, want \"cd\" (already there)", got)
	}

	// Bytes that come while the read waits.
	got := make(chan string, 1)
	go func() { got <- read(10) }()
	waitFor(t, 10*time.Second, "the read to wait", func() bool { return c.rdl.isWaiting() })
	peer.Write([]byte("ef"))
	if s := <-got; s != "ef" {
		t.Fatalf("a waiting read got %q, want \"ef\"", s)
	}

	// A full read after the wait: what is left is read without waiting.
	peer.Write([]byte("0123456789"))
	waitData(t, c)
	if got := read(4); got != "0123" {
		t.Fatalf("read %q, want \"0123\"", got)
	}
	if c.p.drained.Load() {
		t.Fatal("a full read left the socket marked drained")
	}
	if got := read(4); got != "4567" {
		t.Fatalf("read %q after a full read, want \"4567\"", got)
	}
	if got := read(4); got != "89" {
		t.Fatalf("read %q, want \"89\"", got)
	}
}

// TestPollFDWaitFirstEnds: a read waiting first (after a short read) ends
// on the deadline, on Close, and on the peer's close, as any wait does.
func TestPollFDWaitFirstEnds(t *testing.T) {
	drainedPair := func() (*tcpConn, net.Conn) {
		c, peer := joinedPair(t)
		peer.Write([]byte("x"))
		waitData(t, c)
		if _, err := c.Read(make([]byte, 8)); err != nil {
			t.Fatal(err)
		}
		if !c.p.drained.Load() {
			t.Fatal("a short read did not mark the socket drained")
		}
		c.waitFirstNext(true)
		return c, peer
	}
	t.Run("deadline", func(t *testing.T) {
		c, _ := drainedPair()
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 8)); !isDeadline(err) {
			t.Fatalf("read: %v, want a timeout", err)
		}
	})
	t.Run("past deadline", func(t *testing.T) {
		c, peer := drainedPair()
		peer.Write([]byte("y"))
		waitData(t, c)
		c.SetReadDeadline(time.Unix(1, 0))
		if _, err := c.Read(make([]byte, 8)); !isDeadline(err) {
			t.Fatalf("read under a past deadline: %v, want a timeout", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		c, _ := drainedPair()
		done := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 8))
			done <- err
		}()
		waitFor(t, 10*time.Second, "the read to wait", func() bool { return c.rdl.isWaiting() })
		c.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read: %v, want net.ErrClosed", err)
		}
	})
	t.Run("peer close", func(t *testing.T) {
		c, peer := drainedPair()
		done := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 8))
			done <- err
		}()
		waitFor(t, 10*time.Second, "the read to wait", func() bool { return c.rdl.isWaiting() })
		peer.Close()
		if err := <-done; err != io.EOF {
			t.Fatalf("read: %v, want EOF", err)
		}
	})
}

// TestHalfCloseAfterRequestEnds: a keep-alive client that sends its
// request and half-closes (nc, scripts) gets its response and then the
// close at once, not at the keep-alive timeout, also when it sent
// requests before on the connection (the server then waited for this
// one): the FIN comes with the request, and the wait for the next request
// asks the socket first on a connection's first requests
// (waitFirstAfter).
func TestHalfCloseAfterRequestEnds(t *testing.T) {
	origin := startRawOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := startProxy(t, routerFor(t, &Peer{Addr: origin}),
		Config{Downstream: DownstreamConfig{KeepAliveTimeout: 10 * time.Minute}}, ListenerConfig{Name: "http"})
	for n := 1; n <= waitFirstAfter; n++ {
		c := dialTCP(t, p.addr)
		c.SetReadDeadline(time.Now().Add(time.Minute))
		br := bufio.NewReader(c)
		for i := 1; i <= n; i++ {
			if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: t\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			if i == n {
				c.(*net.TCPConn).CloseWrite()
			}
			if err := readRawResponse(br); err != nil {
				t.Fatalf("request %d of %d: %v", i, n, err)
			}
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("%d requests, the last with a half-close: after the responses %v, want EOF (the server's close)", n, err)
		}
		c.Close()
	}
}
