package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logtest"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
)

// TestAdminConnectionCap: a client that opens connections to the admin
// API without finishing a request holds at most maxAdminConns of them;
// the next is closed at once, and a connection closed gives its slot to
// the next client. Before the cap, every connection was kept (for the
// head's 10 s, or an idle minute, as the timeouts were then), each holding
// a descriptor of the process: 15,000 held 14,000 of a real node's 20,000.
func TestAdminConnectionCap(t *testing.T) {
	n := startNode(t, writeFiles(t, clusterFor(origin(t, "a"))))
	addr := n.AdminAddr()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	held := make([]net.Conn, 0, maxAdminConns)
	for range maxAdminConns {
		c := dial()
		io.WriteString(c, "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n") // half a head: the server waits
		held = append(held, c)
	}
	// closedAtOnce reports whether the server closed c well before the
	// head timeout (5 s), without answering.
	closedAtOnce := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(c)
		return err == nil && len(b) == 0
	}
	over := dial()
	if !closedAtOnce(over) {
		t.Fatalf("connection %d was kept open: the admin API has no connection limit", maxAdminConns+1)
	}
	held[0].Close()
	// The slot comes back once the server has seen the close; a new
	// client gets it then.
	waitUntil(t, "a slot freed by a closed connection", func() bool {
		c := dial()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		return strings.HasPrefix(string(b), "HTTP/1.1 200")
	})
}

// TestAdminConnectionCapPerClient: one remote address holds at most its
// share of the admin connections, so it cannot lock the others out;
// another address, and loopback clients (tunnels, the CLI), still get in,
// up to the total; a closed connection gives its place back, once.
func TestAdminConnectionCapPerClient(t *testing.T) {
	t.Parallel()
	fake := &fakeListener{conns: make(chan net.Conn, 1), closed: make(chan struct{})}
	accept := serveCapped(t, fake, newCapListener(fake, 8, 2, 0, slog.New(slog.NewTextHandler(io.Discard, nil))))
	a1, a2 := accept("10.0.0.7:1000"), accept("10.0.0.7:1001")
	if a1 == nil || a2 == nil {
		t.Fatal("a client's first two connections were refused")
	}
	if accept("[::ffff:10.0.0.7]:1002") != nil {
		t.Fatal("a client's third connection (as a mapped IPv6 address) was let in")
	}
	if accept("10.0.0.8:1000") == nil {
		t.Fatal("another client was locked out")
	}
	// An IPv6 client is counted by its /64: one host takes any address
	// of it, and two of them held two connections each.
	if accept("[2001:db8:1:2::1]:1000") == nil || accept("[2001:db8:1:2::2]:1000") == nil {
		t.Fatal("an IPv6 client's first two connections were refused")
	}
	if accept("[2001:db8:1:2:aaaa::3]:1000") != nil {
		t.Fatal("a third connection from the same /64 was let in")
	}
	var local []net.Conn
	for i := range 3 {
		c := accept(fmt.Sprintf("127.0.0.1:%d", 2000+i))
		if c == nil {
			t.Fatalf("loopback connection %d refused", i)
		}
		local = append(local, c)
	}
	if accept("127.0.0.1:3000") != nil {
		t.Fatal("a connection past the total was let in")
	}
	a1.Close()
	a1.Close() // twice: one place back
	local[0].Close()
	if accept("10.0.0.7:1003") == nil {
		t.Fatal("a closed connection did not give its client's place back")
	}
	if accept("10.0.0.7:1004") != nil {
		t.Fatal("closing twice gave two places back")
	}
}

// serveCapped accepts from l (over fake) until the test ends, and returns
// accept: it offers fake a connection from remote and returns it as l
// hands it on, or nil when l closed it.
func serveCapped(t *testing.T, fake *fakeListener, l *capListener) func(remote string) net.Conn {
	accepted := make(chan net.Conn)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() { l.Close(); <-ended })
	return func(remote string) net.Conn {
		t.Helper()
		c := &addrConn{remote: remote, done: make(chan struct{})}
		fake.conns <- c
		select {
		case a := <-accepted:
			if a.(*cappedConn).Conn != c {
				t.Fatalf("%s: handed on another connection", remote)
			}
			return a
		case <-c.done:
			return nil
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: neither handed on nor closed", remote)
			return nil
		}
	}
}

// TestAdminConnectionCapLocalReserve: remote clients cannot take the
// last of the admin connections, so the operator's own CLI and an ssh
// tunnel (both loopback clients) still get in when a flood from many
// addresses holds every other slot. Before the reserve, 8 addresses at
// their 64 each held all 512, renewing them every 5 s, and every
// loopback connection was closed at once.
func TestAdminConnectionCapLocalReserve(t *testing.T) {
	t.Parallel()
	fake := &fakeListener{conns: make(chan net.Conn, 1), closed: make(chan struct{})}
	logs := &lockedBuffer{}
	l := newCapListener(fake, maxAdminConns, maxAdminConnsPerClient, maxAdminConnsLocalReserve, slog.New(slog.NewTextHandler(logs, nil)))
	accept := serveCapped(t, fake, l)
	remoteShare := maxAdminConns - maxAdminConnsLocalReserve
	// The flood: 8 clients (v4 addresses and v6 /64s), each up to its own cap.
	var remote []net.Conn
	for i := range 8 {
		for j := range maxAdminConnsPerClient {
			from := fmt.Sprintf("10.0.0.%d:%d", i+1, 1000+j)
			if i%2 == 1 {
				from = fmt.Sprintf("[2001:db8:%d::1]:%d", i+1, 1000+j) // a /64 each
			}
			if c := accept(from); c != nil {
				remote = append(remote, c)
			}
		}
	}
	if len(remote) > remoteShare {
		t.Fatalf("remote clients hold %d admin connections, more than the %d of %d not kept for loopback clients", len(remote), remoteShare, maxAdminConns)
	}
	if len(remote) != remoteShare {
		t.Fatalf("remote clients got %d admin connections, want %d", len(remote), remoteShare)
	}
	if accept("10.0.0.99:1000") != nil {
		t.Fatal("a new remote address got in past the remote share")
	}
	waitUntil(t, "the warning for the remote share", func() bool {
		return strings.Contains(logs.String(), "limit="+fmt.Sprint(remoteShare))
	})
	// The operator: the CLI over 127.0.0.1, a tunnel over ::1 or a
	// mapped address; every one of the reserve is theirs.
	var local []net.Conn
	for i := range maxAdminConnsLocalReserve {
		from := []string{"127.0.0.1:%d", "[::1]:%d", "[::ffff:127.0.0.2]:%d"}[i%3]
		c := accept(fmt.Sprintf(from, 2000+i))
		if c == nil {
			t.Fatalf("loopback connection %d refused while remote clients hold %d", i, len(remote))
		}
		local = append(local, c)
	}
	if accept("127.0.0.1:3000") != nil {
		t.Fatal("a loopback connection past the total was let in")
	}
	// A slot a remote connection frees goes to a remote client; one a
	// loopback connection frees stays in the reserve.
	remote[0].Close()
	if accept("10.0.0.99:1001") == nil {
		t.Fatal("a remote client did not get the slot a remote connection freed")
	}
	local[0].Close()
	if accept("10.0.0.99:1002") != nil {
		t.Fatal("a remote client got the slot of the reserve a loopback connection freed")
	}
	if accept("127.0.0.1:3001") == nil {
		t.Fatal("a loopback client did not get the slot a loopback connection freed")
	}
	// Loopback clients may take the remote share's free slots too, up to
	// the total.
	remote[1].Close()
	if accept("127.0.0.1:3002") == nil {
		t.Fatal("a loopback client did not get a free slot of the remote share")
	}
	if accept("10.0.0.99:1003") != nil {
		t.Fatal("a remote client got in past the total")
	}
}

// lockedBuffer is a log destination the test reads while the listener
// writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fakeListener hands out the connections sent on conns until closed.
type fakeListener struct {
	conns  chan net.Conn
	closed chan struct{}
}

func (f *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-f.conns:
		return c, nil
	case <-f.closed:
		return nil, net.ErrClosed
	}
}
func (f *fakeListener) Close() error   { close(f.closed); return nil }
func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{} }

// addrConn is a connection from remote; done is closed when it is.
type addrConn struct {
	net.Conn // nil: only the methods below are called
	remote   string
	done     chan struct{}
	once     sync.Once
}

func (c *addrConn) RemoteAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(c.remote))
}
func (c *addrConn) Close() error { c.once.Do(func() { close(c.done) }); return nil }

// emfileListener fails its Accepts with EMFILE while fail is above zero,
// as accept4 does on a process out of descriptors, then hands out conns.
type emfileListener struct {
	fakeListener
	fail atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.fail.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.fakeListener.Accept()
}

// TestAdminAcceptOutOfDescriptors: an admin accept that fails for want of
// descriptors is retried by the listener after a back-off (net/http, given
// the error, logged a plain-text line a second on stderr), counted for
// pingora_admin_accept_failures_total, logged at most logthrottle's burst,
// and Close ends a back-off at once.
func TestAdminAcceptOutOfDescriptors(t *testing.T) {
	t.Parallel()
	var logs logtest.Buffer
	fake := &emfileListener{fakeListener: fakeListener{conns: make(chan net.Conn, 1), closed: make(chan struct{})}}
	fake.fail.Store(30)
	l := newCapListener(fake, 8, 8, 0, slog.New(slog.NewTextHandler(&logs, nil)))
	clk := clock.NewFake(time.Unix(1000, 0))
	l.clk = clk
	fake.conns <- &addrConn{remote: "127.0.0.1:5000", done: make(chan struct{})}
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if c != nil {
			c.Close()
		}
		accepted <- err
	}()
	for {
		waitUntil(t, "the accept back-off, or the connection", func() bool { return clk.Waiters() == 1 || len(accepted) == 1 })
		if len(accepted) == 1 {
			break
		}
		clk.Advance(time.Second)
	}
	if got := l.acceptFails.Load(); got != 30 {
		t.Fatalf("acceptFails = %d, want 30", got)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("Accept after 30 EMFILEs: %v", err)
	}
	if got := strings.Count(logs.String(), "accept failed"); got == 0 || got > logthrottle.DefaultBurst {
		t.Fatalf("30 failures logged %d lines, want 1 to %d:\n%s", got, logthrottle.DefaultBurst, logs.String())
	}

	fake.fail.Store(1 << 30) // out of descriptors for good: Close must not wait for the back-off
	go func() { _, err := l.Accept(); accepted <- err }()
	waitUntil(t, "the accept back-off", func() bool { return clk.Waiters() == 1 })
	l.Close()
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
	}
}
