package node

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/wire/wiretest"
)

// TestRaftAddrIsBounded: with raft_addr (raft on a port of its own),
// raft's listener took every connection, and raft keeps each open with no
// deadline: 3,000 idle connections from one client stayed open on a real
// node (the cluster port's raft side has been bounded since issue 13's
// mux). Now at most maxRaftConns are open at once; one more is closed as
// soon as it is accepted.
func TestRaftAddrIsBounded(t *testing.T) {
	n := &Node{cfg: &config.Node{RaftAddr: "127.0.0.1:0", ClusterAddr: "127.0.0.1:0"}}
	ln, err := n.raftListen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, maxRaftConns+1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c // as raft holds its connections
		}
	}()
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}
	for i := 0; i < maxRaftConns; i++ {
		dial()
	}
	var first net.Conn
	for i := 0; i < maxRaftConns; i++ {
		select {
		case c := <-held:
			if first == nil {
				first = c
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d connections accepted", i, maxRaftConns)
		}
	}
	over := dial()
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := over.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("connection %d: read %v, want it closed (EOF)", maxRaftConns+1, err)
	}
	first.Close()
	dial()
	select {
	case c := <-held:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a connection after one closed was not accepted")
	}
}

// TestConnLimitListenerPerAddr: one remote address holds at most perAddr
// connections; another address, and loopback, are still accepted.
func TestConnLimitListenerPerAddr(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	from := make(chan net.Addr, 1)
	ln := newConnLimitListener(wiretest.FromListener{Listener: tl, From: from}, 8, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	// try connects as addr and reports whether the listener handed it on.
	try := func(addr string) bool {
		t.Helper()
		from <- &net.TCPAddr{IP: net.ParseIP(addr), Port: 40000}
		c, err := net.Dial("tcp", tl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		closed := make(chan struct{})
		go func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
				close(closed)
			}
		}()
		select {
		case a := <-accepted:
			t.Cleanup(func() { a.Close() })
			return true
		case <-closed:
			return false
		case <-time.After(10 * time.Second):
			t.Fatal("neither accepted nor closed")
			return false
		}
	}
	if !try("10.0.0.6") || !try("10.0.0.6") {
		t.Fatal("a connection under the per-address limit was closed")
	}
	if try("10.0.0.6") {
		t.Fatal("a third connection from one address was accepted")
	}
	if !try("10.0.0.2") {
		t.Fatal("another address was closed")
	}
	for i := 0; i < 3; i++ {
		if !try("127.0.0.1") {
			t.Fatal("loopback was bounded by address")
		}
	}
}
