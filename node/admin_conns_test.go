package node

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestAdminConnectionCap: a client that opens connections to the admin
// API without finishing a request holds at most maxAdminConns of them;
// the next is closed at once, and a connection closed gives its slot to
// the next client. Before the cap, every connection was kept (for the
// head's 10 s, or an idle minute), each holding a descriptor of the
// process: 15,000 held 14,000 of a real node's 20,000.
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
	// head timeout (10 s), without answering.
	closedAtOnce := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
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
