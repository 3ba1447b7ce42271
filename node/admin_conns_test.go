package node

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
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
	l := newCapListener(fake, 6, 2, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
	// accept offers a connection from remote and returns it as handed on,
	// or nil when the listener closed it.
	accept := func(remote string) net.Conn {
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
