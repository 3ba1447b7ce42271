package consensus

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestAdvertiseAddr(t *testing.T) {
	t.Parallel()
	cases := []struct{ advertise, bound, want string }{
		{"", "127.0.0.1:7947", "127.0.0.1:7947"},
		{"", "0.0.0.0:7947", "error: raft is bound to 0.0.0.0:7947, which other servers cannot dial: set Advertise"},
		{"", "[::]:7947", "error: which other servers cannot dial"},
		{"10.0.0.5:0", "[::]:41234", "10.0.0.5:41234"},
		{"10.0.0.5:7000", "[::]:41234", "10.0.0.5:7000"},
		{"raft-0.pingora.svc:7947", "0.0.0.0:7947", "raft-0.pingora.svc:7947"},
		{"[fd00::5]:0", "[::]:7947", "[fd00::5]:7947"},
		{"0.0.0.0:7947", "0.0.0.0:7947", "error: Advertise \"0.0.0.0:7947\" is a wildcard address"},
		{"10.0.0.5", "0.0.0.0:7947", "error: Advertise \"10.0.0.5\" is not host:port"},
	}
	for _, tc := range cases {
		got, err := advertiseAddr(tc.advertise, tc.bound)
		if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("advertiseAddr(%q, %q) = %q, %v; want error %q", tc.advertise, tc.bound, got, err, want)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("advertiseAddr(%q, %q) = %q, %v; want %q", tc.advertise, tc.bound, got, err, tc.want)
		}
	}
}

// TestStoreAdvertises: a server bound to every address on a free port is
// known to raft (its own configuration) at the advertised host and the
// bound port; without Advertise, it refuses to start.
func TestStoreAdvertises(t *testing.T) {
	cfg := DefaultLocalConfig()
	cfg.ID, cfg.DataDir, cfg.BootstrapExpect = "solo", t.TempDir(), 1
	cfg.BindAddr, cfg.Advertise = "0.0.0.0:0", "127.0.0.1:0"
	cfg.Logger = testLogger(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.Addr() == "127.0.0.1:0" {
		t.Fatalf("Addr() = %q", s.Addr())
	}
	waitFor(t, 10*time.Second, "a leader", s.IsLeader)
	if _, addr := s.Leader(); addr != s.Addr() {
		t.Fatalf("leader address %q, want %q", addr, s.Addr())
	}

	cfg.DataDir, cfg.Advertise = t.TempDir(), ""
	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot dial: set Advertise") {
		t.Fatalf("Start on a wildcard without Advertise: %v", err)
	}
}

// markedListener accepts only connections that open with the byte mark,
// which it consumes: a stand-in for a port shared by first byte.
type markedListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *markedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 0xC8 {
			c.Close()
			continue
		}
		l.accepted.Add(1)
		return c, nil
	}
}

// TestListenAndDial: servers whose raft runs over a listener and a dial
// function of the caller's (here one that sends a protocol byte first, as
// a port shared with wire does) form a cluster and replicate a write; the
// listeners are closed by Close.
func TestListenAndDial(t *testing.T) {
	var dials atomic.Int64
	var lns []*markedListener
	var mu sync.Mutex
	c := newCluster(t, 3, 3, func(cfg *Config) {
		cfg.Listen = func() (net.Listener, error) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			ml := &markedListener{Listener: ln}
			mu.Lock()
			lns = append(lns, ml)
			mu.Unlock()
			return ml, nil
		}
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			dials.Add(1)
			if _, err := conn.Write([]byte{0xC8}); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		}
	})
	c.reconcile()
	l := c.leader(10 * time.Second)
	if _, err := l.s.Put(ctxT(t, 5*time.Second), "doc", []byte("v1"), -1); err != nil {
		t.Fatal(err)
	}
	f := c.follower(l)
	waitFor(t, 5*time.Second, "the write on a follower", func() bool { _, ok := f.s.Get("doc"); return ok })
	mu.Lock()
	defer mu.Unlock()
	var accepted int64
	for _, ml := range lns {
		accepted += ml.accepted.Load()
	}
	if accepted == 0 || dials.Load() == 0 {
		t.Errorf("%d connections accepted through Listen, %d made through Dial; want some of each", accepted, dials.Load())
	}
	for _, n := range c.nodes {
		n.s.Close()
	}
	for _, ml := range lns {
		if c, err := net.Dial("tcp", ml.Addr().String()); err == nil {
			c.Close()
			t.Errorf("listener %s still accepts after Close", ml.Addr())
		}
	}
}

// TestCloseEndsDialsToUnreachablePeers: Close ends a raft RPC still
// dialling a peer whose packets vanish, instead of waiting for the
// transport's timeout (10 s): raft's Shutdown waits for every RPC
// goroutine, so a node stopped or upgraded while another server was
// unreachable (a host down, a partition) kept raft that long, and the
// successor of an upgrade waited for it (9 s seen on network namespaces
// with iptables dropping the peers' packets).
func TestCloseEndsDialsToUnreachablePeers(t *testing.T) {
	cfg := DefaultLocalConfig()
	cfg.ID, cfg.DataDir, cfg.BootstrapExpect = "a", t.TempDir(), 1
	cfg.BindAddr = "127.0.0.1:0"
	cfg.Logger = testLogger(t)
	dialled, ended := make(chan struct{}, 1), make(chan error, 1)
	cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		dialled <- struct{}{}
		<-ctx.Done() // a peer that never answers
		ended <- ctx.Err()
		return nil, ctx.Err()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	nt, ok := s.trans.(*raft.NetworkTransport)
	if !ok {
		t.Fatalf("transport %T, want raft's network transport", s.trans)
	}
	go func() {
		var resp raft.RequestVoteResponse
		nt.RequestVote("b", "192.0.2.1:7947", &raft.RequestVoteRequest{}, &resp) //nolint:errcheck // it fails
	}()
	<-dialled
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("the dial to the unreachable peer ended with %v, want cancelled by Close", err)
	}
	<-closed
}

// TestInboundIdleClosed: an inbound raft connection that sends nothing,
// or half a message and then nothing, is closed after IdleTimeout. Raft's
// network transport reads its inbound connections with no deadline: a
// stranger (or a peer that died without a FIN) held them for ever.
func TestInboundIdleClosed(t *testing.T) {
	cfg := DefaultLocalConfig()
	cfg.ID, cfg.DataDir, cfg.BootstrapExpect = "solo", t.TempDir(), 1
	cfg.IdleTimeout = 200 * time.Millisecond
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, send := range [][]byte{nil, {byte(0)}} { // nothing; an AppendEntries' type byte alone
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(send); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("sent %v: the connection was still open after 10 s (IdleTimeout %s)", send, cfg.IdleTimeout)
		}
		// An idle connection is closed quietly, as one its peer closed:
		// a warning for every connection a peer let idle in its pool
		// would fill the log.
		if send == nil && strings.Contains(logs.String(), "failed to decode") {
			t.Fatalf("an idle connection closed with a warning: %s", logs.String())
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestIdleDialledConnRedialled: a connection this server dialled, which
// idled in raft's pool until the other side closed it for idleness, is
// dialled afresh when raft starts its next RPC on it (SetDeadline): the
// RPC goes through instead of failing on the closed connection (a failed
// AppendEntries is logged as an error and backs replication off).
func TestIdleDialledConnRedialled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	idle := 200 * time.Millisecond
	server := &streamLayer{Listener: ln, addr: tcpAddr(ln.Addr().String()), idle: idle}
	defer server.Close()
	closed := make(chan struct{}, 8) // a server side gave up on its connection
	go func() {
		for {
			c, err := server.Accept()
			if err != nil {
				return
			}
			go func() { // echoes bytes until its idle deadline
				defer c.Close()
				io.Copy(c, c)
				closed <- struct{}{}
			}()
		}
	}()
	var d net.Dialer
	client := &streamLayer{addr: "127.0.0.1:1", idle: idle,
		dial: func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }}
	c, err := client.Dial(raft.ServerAddress(server.addr), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rpc := func() error {
		if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return err
		}
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		b := make([]byte, 1)
		_, err := io.ReadFull(c, b)
		return err
	}
	if err := rpc(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the server side never closed the idle connection")
	}
	if err := rpc(); err != nil {
		t.Fatalf("an RPC on a pooled connection the other side closed for idleness: %v", err)
	}
}
