package wiretest_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wiretest"
)

// node is one side of a faulted link: a server named after it, counting
// the calls it receives, and a client dialling through the faults.
type node struct {
	name  string
	srv   *wire.Server
	cl    *wire.Client
	calls atomic.Int32
}

// cluster starts nodes a and b on an in-memory network behind f.
func cluster(t *testing.T, f *wiretest.Faults) (*wiretest.Network, *node, *node) {
	t.Helper()
	nw := wiretest.New()
	mk := func(name string) *node {
		n := &node{name: name}
		l, err := nw.Listen(name)
		if err != nil {
			t.Fatal(err)
		}
		n.srv, _ = wire.NewServer(wire.ServerConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		n.srv.Handle("count", func(context.Context, []byte) ([]byte, error) {
			n.calls.Add(1)
			return []byte(name), nil
		})
		done := make(chan struct{})
		go func() { defer close(done); n.srv.Serve(f.Listener(name, l)) }()
		n.cl, _ = wire.NewClient(wire.ClientConfig{Dialer: f.Dialer(name, nw.Dialer())})
		t.Cleanup(func() { n.cl.Close(); n.srv.Close(); <-done })
		return n
	}
	a, b := mk("a"), mk("b")
	t.Cleanup(func() { f.Close() })
	return nw, a, b
}

func call(t *testing.T, from, to *node, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, err := from.cl.CallRaw(ctx, to.name, "count", nil)
	if err == nil && string(out) != to.name {
		t.Fatalf("%s → %s answered %q", from.name, to.name, out)
	}
	return err
}

func mustCall(t *testing.T, from, to *node) {
	t.Helper()
	if err := call(t, from, to, 10*time.Second); err != nil {
		t.Fatalf("%s → %s: %v", from.name, to.name, err)
	}
}

func TestPartitionHoldsThenHeals(t *testing.T) {
	f := wiretest.NewFaults(wiretest.FaultsConfig{})
	nw, a, b := cluster(t, f)
	mustCall(t, a, b)
	mustCall(t, b, a)
	f.Partition([]string{"a"}, []string{"b"})
	for _, p := range [][2]*node{{a, b}, {b, a}} {
		if err := call(t, p[0], p[1], 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s → %s across the partition: %v, want DeadlineExceeded", p[0].name, p[1].name, err)
		}
	}
	fresh, _ := wire.NewClient(wire.ClientConfig{Dialer: f.Dialer("a", nw.Dialer())})
	defer fresh.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := fresh.CallRaw(ctx, "b", "count", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a new dial across the partition: %v, want DeadlineExceeded", err)
	}
	fresh.Close() // its dial, still waiting for the link, gives up
	f.Heal()
	mustCall(t, a, b)
	mustCall(t, b, a)
	if da, db := nw.Dials("a"), nw.Dials("b"); da != 1 || db != 1 {
		t.Fatalf("dials a=%d b=%d, want 1 each: a partition holds connections, it does not reset them", da, db)
	}
}

// TestOneWayCut: with a→b cut, a's requests never reach b, while b's
// requests reach a (which runs them) and only the answers are held.
func TestOneWayCut(t *testing.T) {
	f := wiretest.NewFaults(wiretest.FaultsConfig{})
	_, a, b := cluster(t, f)
	mustCall(t, a, b)
	mustCall(t, b, a)
	f.CutOneWay("a", "b")
	if err := call(t, a, b, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a → b: %v, want DeadlineExceeded", err)
	}
	if err := call(t, b, a, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b → a: %v, want DeadlineExceeded (the answer is held)", err)
	}
	if n := b.calls.Load(); n != 1 {
		t.Fatalf("b ran %d calls, want 1: nothing from a crosses a→b", n)
	}
	waitFor(t, "b's request to reach a", func() bool { return a.calls.Load() == 2 })
	f.Heal()
	mustCall(t, a, b)
	mustCall(t, b, a)
}

// TestDelay: with a fake clock, a delayed request is delivered only when
// the clock reaches its due time.
func TestDelay(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	f := wiretest.NewFaults(wiretest.FaultsConfig{Clock: clk})
	_, a, b := cluster(t, f)
	mustCall(t, a, b)
	f.Set("a", "b", wiretest.LinkFaults{Delay: time.Second})
	done := make(chan error, 1) // the delayed call's result
	go func() { done <- call(t, a, b, 30*time.Second) }()
	waitFor(t, "the request to wait on the delay", func() bool { return f.Stats().Queued == 1 && clk.Waiters() > 0 })
	clk.Advance(999 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("call finished before its delay: %v", err)
	default:
	}
	if n := b.calls.Load(); n != 1 {
		t.Fatalf("b ran %d calls, want only the first", n)
	}
	clk.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDropFrames: dropped frames are lost whole, so the connection stays
// in step and later calls on it work.
func TestDropFrames(t *testing.T) {
	f := wiretest.NewFaults(wiretest.FaultsConfig{Seed: 7})
	nw, a, b := cluster(t, f)
	mustCall(t, a, b)
	const n = 20
	// b answers once every call has been sent (it arrived, or its frame
	// was dropped): each dropped call then sees the others' answers come
	// in while it waits, as on a connection that works. Otherwise a call
	// sent after every answer came back (a slow goroutine on a loaded
	// machine) waits with nothing received, and the client rightly leaves
	// the connection as silent and dials again.
	var arrived atomic.Uint64
	b.srv.Handle("gated", func(ctx context.Context, _ []byte) ([]byte, error) {
		arrived.Add(1)
		for arrived.Load()+f.Stats().DroppedFrames < n {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		return []byte("b"), nil
	})
	f.Set("a", "b", wiretest.LinkFaults{DropFrames: 0.5})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := a.cl.CallRaw(ctx, "b", "gated", nil); err != nil {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("call: %v", err)
				}
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	drops := f.Stats().DroppedFrames
	if drops == 0 || drops == n || uint64(failed.Load()) != drops {
		t.Fatalf("%d of %d calls failed with %d frames dropped; want some of each, one failure per drop", failed.Load(), n, drops)
	}
	f.Heal()
	mustCall(t, a, b)
	if d := nw.Dials("b"); d != 1 {
		t.Fatalf("dials = %d, want 1: drops must leave the stream in step", d)
	}
}

func TestDropDialsAndReset(t *testing.T) {
	f := wiretest.NewFaults(wiretest.FaultsConfig{})
	nw, a, b := cluster(t, f)
	f.Set("a", "b", wiretest.LinkFaults{DropDials: 1})
	err := call(t, a, b, 5*time.Second)
	if !errors.Is(err, wire.ErrPeerGone) || !errors.Is(err, wiretest.ErrDialDropped) {
		t.Fatalf("dial with DropDials 1: %v", err)
	}
	if s := f.Stats(); s.DroppedDials != 1 {
		t.Fatalf("DroppedDials = %d", s.DroppedDials)
	}
	f.Heal()
	mustCall(t, a, b)
	f.Reset("b", "a")
	waitFor(t, "the reset connection to be dropped", func() bool {
		return call(t, a, b, 5*time.Second) == nil && nw.Dials("b") == 2
	})
}

// TestRawProtocolOverTCP: faults work over real TCP listeners, and a
// connection that is not wire is never dropped from, only held or delayed.
func TestRawProtocolOverTCP(t *testing.T) {
	f := wiretest.NewFaults(wiretest.FaultsConfig{})
	t.Cleanup(func() { f.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nl := f.Listener("raft-b", l)
	defer nl.Close()
	go func() {
		c, err := nl.Accept()
		if err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	f.Set("a", "raft-b", wiretest.LinkFaults{DropFrames: 1})
	d := f.Dialer("a", wire.DialerFunc(func(ctx context.Context, addr string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", addr)
	}))
	c, err := d.DialContext(context.Background(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte{wire.ProtoRaft, 0, 0, 0, 1, 42} // looks like a frame, is not wire
	c.Write(msg)
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo = %v, %v", got, err)
	}
	if c.RemoteAddr().String() != l.Addr().String() {
		t.Fatalf("RemoteAddr = %s, want the real peer %s", c.RemoteAddr(), l.Addr())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // sleep-ok: polling interval of a bounded wait
	}
}
