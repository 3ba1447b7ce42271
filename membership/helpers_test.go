package membership

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// logSink collects every log line of a test's nodes and echoes Info and
// above to t.Log until the test's cleanups are done.
type logSink struct {
	t      *testing.T
	mu     sync.Mutex
	lines  []string
	closed bool
}

func newLogSink(t *testing.T) *logSink {
	s := &logSink{t: t}
	t.Cleanup(func() { // registered first, so it runs after node shutdowns
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
	})
	return s
}

func (s *logSink) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, line)
	if !s.closed && !strings.Contains(line, "level=DEBUG") {
		s.t.Log(line)
	}
	return len(p), nil
}

func (s *logSink) contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func (s *logSink) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startNode starts a fast-profile node on 127.0.0.1:0 with cfg's other
// fields, and shuts it down at cleanup. Unless cfg says otherwise the
// node is ready and gossips a cluster RPC address, so it is on the ring.
func startNode(t *testing.T, sink *logSink, cfg Config) *Cluster {
	t.Helper()
	cfg.Meta = ringReady(cfg.Name, cfg.Meta)
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1:0"
	}
	if cfg.Profile == "" {
		cfg.Profile = ProfileFast
	}
	cfg.Logger = sink.logger()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown() })
	return c
}

// ringReady fills in what puts a node on the ring (ready, a cluster RPC
// address) where m leaves it unset.
func ringReady(name string, m Meta) Meta {
	if m.State == "" {
		m.State = StateReady
	}
	if m.Addrs.Cluster == "" {
		m.Addrs.Cluster = "rpc-" + name + ":7947"
	}
	return m
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
	return time.Since(start)
}

// sameRing reports whether every node's ring has exactly want members and
// all digests are equal.
func sameRing(nodes []*Cluster, want int) bool {
	d := nodes[0].Ring().Digest()
	for _, n := range nodes {
		if r := n.Ring(); r.Len() != want || r.Digest() != d {
			return false
		}
	}
	return true
}

func stateOn(c *Cluster, name string) State {
	for _, m := range c.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

func ringHas(c *Cluster, name string) bool {
	for _, m := range c.Ring().Members() {
		if m == name {
			return true
		}
	}
	return false
}

// faultNet partitions gossip between groups of nodes by dropping every
// outgoing packet and refusing every stream across group lines. Since every
// node's transport is wrapped, dropping outgoing traffic cuts both ways.
type faultNet struct {
	mu    sync.Mutex
	group map[string]int // gossip addr -> group; absent means group 0
}

func newFaultNet() *faultNet { return &faultNet{group: make(map[string]int)} }

func (f *faultNet) set(addr string, g int) {
	f.mu.Lock()
	f.group[addr] = g
	f.mu.Unlock()
}

func (f *faultNet) heal() {
	f.mu.Lock()
	clear(f.group)
	f.mu.Unlock()
}

func (f *faultNet) blocked(from, to string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.group[from] != f.group[to]
}

func (f *faultNet) wrap(nt memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	port := nt.(interface{ GetAutoBindPort() int }).GetAutoBindPort()
	return &faultTransport{NodeAwareTransport: nt, net: f, self: fmt.Sprintf("127.0.0.1:%d", port)}
}

type faultTransport struct {
	memberlist.NodeAwareTransport
	net  *faultNet
	self string
}

var _ memberlist.NodeAwareTransport = (*faultTransport)(nil)

func (t *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.net.blocked(t.self, addr) {
		return time.Now(), nil // dropped silently, like a lost datagram
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *faultTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.net.blocked(t.self, a.Addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *faultTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	if t.net.blocked(t.self, addr) {
		return nil, fmt.Errorf("faultnet: %s -> %s partitioned", t.self, addr)
	}
	return t.NodeAwareTransport.DialTimeout(addr, d)
}

func (t *faultTransport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	if t.net.blocked(t.self, a.Addr) {
		return nil, fmt.Errorf("faultnet: %s -> %s partitioned", t.self, a.Addr)
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, d)
}

// sendGarbage writes junk to a gossip port over UDP and TCP.
func sendGarbage(t *testing.T, addr string) {
	t.Helper()
	junk := [][]byte{
		{0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5},
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		append([]byte{1, 0xff, 0xff, 0xff, 0xff}, bytes.Repeat([]byte{0x42}, 600)...),
		{5, 0xdf, 0xff, 0xff, 0xff, 0xff}, // compressed-message type, huge msgpack map header
		{},
	}
	for _, b := range junk {
		u, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		u.Write(b)
		u.Close()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		buf := make([]byte, 512)
		for ctx.Err() == nil { // until the node closes the connection
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		cancel()
		c.Close()
	}
}
