package membership

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		first, limit time.Duration
		attempt      int
		want         time.Duration
	}{
		{500 * time.Millisecond, 30 * time.Second, 0, 500 * time.Millisecond},
		{500 * time.Millisecond, 30 * time.Second, 1, time.Second},
		{500 * time.Millisecond, 30 * time.Second, 5, 16 * time.Second},
		{500 * time.Millisecond, 30 * time.Second, 6, 30 * time.Second},
		{500 * time.Millisecond, 30 * time.Second, 1000, 30 * time.Second},
		{50 * time.Millisecond, 2 * time.Second, 5, 1600 * time.Millisecond},
		{50 * time.Millisecond, 2 * time.Second, 6, 2 * time.Second},
		{250 * time.Millisecond, maxSyncBackoff, 6, 16 * time.Second}, // metadata sync, lan
		{250 * time.Millisecond, maxSyncBackoff, 7, 30 * time.Second},
	} {
		if got := backoff(tc.first, tc.limit, tc.attempt); got != tc.want {
			t.Errorf("backoff(%s, %s, %d) = %s, want %s", tc.first, tc.limit, tc.attempt, got, tc.want)
		}
	}
}

// TestJoinStatusAndBackoff (issue 12): a join that keeps failing shows in
// the status (seeds, tries, last attempt, last error, next attempt), is
// retried on the backoff schedule (500ms, 1s, 2s... with lan) by the
// injected clock, re-resolves the seed name on every try, and joins once
// the seed is up.
func TestJoinStatusAndBackoff(t *testing.T) {
	sink := newLogSink(t)
	seedAddr := freeLoopback(t)
	_, port, _ := net.SplitHostPort(seedAddr)
	fc := clock.NewFake(time.Unix(1_000_000, 0))
	var lookups atomic.Int32
	c, err := New(Config{Name: "b", BindAddr: "127.0.0.1:0", Join: []string{"seed.example:" + port}, Clock: fc, Logger: sink.logger()})
	if err != nil {
		t.Fatal(err)
	}
	c.lookupHost = func(ctx context.Context, host string) ([]string, error) {
		if lookups.Add(1) <= 2 { // the name does not resolve yet
			return nil, errors.New("no such host")
		}
		return []string{"127.0.0.1"}, nil
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown() })
	t0 := fc.Now()
	// attempt waits for failed attempt k, checks its status, and returns
	// once the retry timer is armed.
	attempt := func(k int, backoff time.Duration, errPart string) {
		t.Helper()
		var st JoinStatus
		waitFor(t, 10*time.Second, "failed attempt", func() bool {
			st = c.Status().Join
			return st.Failures == k && st.NextAttempt.Equal(fc.Now().Add(backoff))
		})
		if st.Joined || !st.LastAttempt.Equal(fc.Now()) || !strings.Contains(st.LastError, errPart) ||
			len(st.Seeds) != 1 || st.Seeds[0] != "seed.example:"+port {
			t.Fatalf("attempt %d: status %+v, want error with %q", k, st, errPart)
		}
		if int(lookups.Load()) != k {
			t.Fatalf("attempt %d resolved the seed %d times, want once per attempt", k, lookups.Load())
		}
	}
	attempt(1, 500*time.Millisecond, `cannot resolve seed "seed.example:`+port+`": no such host`)
	fc.Advance(500 * time.Millisecond)
	attempt(2, time.Second, "cannot resolve seed")
	fc.Advance(time.Second)
	attempt(3, 2*time.Second, "failed to join 127.0.0.1:"+port)
	if st := c.Status().Join; len(st.Tried) != 1 || st.Tried[0] != seedAddr {
		t.Fatalf("tried %v, want %s", st.Tried, seedAddr)
	}
	startNode(t, sink, Config{Name: "a", BindAddr: seedAddr})
	fc.Advance(2 * time.Second)
	waitFor(t, 10*time.Second, "the join to succeed", func() bool { return c.Status().Join.Joined })
	st := c.Status().Join
	if st.Failures != 0 || st.LastError != "" || !st.LastSuccess.Equal(t0.Add(3500*time.Millisecond)) {
		t.Fatalf("after joining: %+v", st)
	}
}

// freeLoopback returns a loopback "ip:port" nothing listens on just now.
func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestOnlySelfAsSeed: a node whose every seed is itself (one node file
// for all, "join: [n1]") is the cluster's first node, as with Consul's
// retry_join: joined from the start with a note, no failed attempt, no
// "join failed" warning, and the others join it.
func TestOnlySelfAsSeed(t *testing.T) {
	sink := newLogSink(t)
	addr := freeLoopback(t)
	a := startNode(t, sink, Config{Name: "a", BindAddr: addr, Join: []string{addr}})
	waitFor(t, 10*time.Second, "the seed to count as joined", func() bool { return a.Status().Join.Joined })
	st := a.Status().Join
	if st.Failures != 0 || st.LastError != "" || !strings.Contains(st.Note, "only seed") {
		t.Fatalf("seed's join status %+v", st)
	}
	b := startNode(t, sink, Config{Name: "b", Join: []string{addr}})
	waitFor(t, 10*time.Second, "b to join a", func() bool { return b.Status().Join.Joined && len(a.Members()) == 2 })
	if st := a.Status().Join; !st.Joined || st.Failures != 0 || a.Stats().JoinFailures != 0 {
		t.Fatalf("seed's join status after b joined: %+v", st)
	}
	if sink.contains("join failed") {
		t.Fatal(`a node joining only itself logged "join failed"`)
	}
}

// TestJoinedByAnother: a node whose seeds are down stops retrying them
// once another member joins it (whoever joined whom, it is in a
// cluster): its status says joined at once, without waiting out its
// backoff, and its next attempt is the periodic re-join.
func TestJoinedByAnother(t *testing.T) {
	sink := newLogSink(t)
	addr, dead := freeLoopback(t), freeLoopback(t)
	fc := clock.NewFake(time.Unix(1_000_000, 0))
	a := startNode(t, sink, Config{Name: "a", BindAddr: addr, Join: []string{addr, dead}, Clock: fc})
	waitFor(t, 10*time.Second, "a failed attempt", func() bool { return a.Status().Join.Failures == 1 })
	startNode(t, sink, Config{Name: "b", Join: []string{addr}}) // the fake clock never moves: only b can end a's wait
	waitFor(t, 10*time.Second, "a to count as joined", func() bool { return a.Status().Join.Joined })
	st := a.Status().Join
	if st.Failures != 0 || st.LastError != "" || st.Note != "joined by b" {
		t.Fatalf("a's join status %+v", st)
	}
	waitFor(t, 10*time.Second, "the re-join timer", func() bool {
		return a.Status().Join.NextAttempt.Equal(fc.Now().Add(a.cfg.RejoinInterval))
	})
	if n := a.Stats().JoinFailures; n != 1 {
		t.Fatalf("%d failed attempts, want the first only", n)
	}
}

// TestJoinWrongPortHint: a seed that answers in another protocol (here
// HTTP, as a node's admin or proxy port does) fails the join with a hint
// that the seed is not a gossip port, not only memberlist's "invalid
// msgType (72)".
func TestJoinWrongPortHint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	sink := newLogSink(t)
	c, err := New(Config{Name: "b", BindAddr: "127.0.0.1:0", Join: []string{ln.Addr().String()}, Clock: clock.NewFake(time.Unix(1_000_000, 0)), Logger: sink.logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown() })
	var st JoinStatus
	waitFor(t, 10*time.Second, "a failed join", func() bool { st = c.Status().Join; return st.Failures > 0 })
	if !strings.Contains(st.LastError, "invalid msgType") || !strings.Contains(st.LastError, "not as a gossip port") {
		t.Fatalf("join error %q, want memberlist's error and the wrong-port hint", st.LastError)
	}
}

// TestJoinClosedWithoutAnswerHint: a seed that reads the join and closes
// the connection without a gossip answer (a node's cluster port: its
// first-byte mux takes no gossip byte; or a gossip port of another
// cluster_name, which drops the stream) fails the join with memberlist's
// bare "EOF" or "connection reset by peer". The error names the likely
// causes, and is one line: memberlist's "1 error occurred:\n\t* ..." was
// printed as it was in the log and in "pingora-node status".
func TestJoinClosedWithoutAnswerHint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Read(make([]byte, 1))
			conn.Close()
		}
	}()
	other := startNode(t, newLogSink(t), Config{Name: "o", BindAddr: "127.0.0.1:0", Label: "other"})
	for _, seed := range []string{ln.Addr().String(), other.Addr()} {
		sink := newLogSink(t)
		c, err := New(Config{Name: "b", BindAddr: "127.0.0.1:0", Join: []string{seed}, Clock: clock.NewFake(time.Unix(1_000_000, 0)), Logger: sink.logger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		var st JoinStatus
		waitFor(t, 10*time.Second, "a failed join", func() bool { st = c.Status().Join; return st.Failures > 0 })
		c.Shutdown()
		if strings.Contains(st.LastError, "\n") || strings.Contains(st.LastError, "error occurred") {
			t.Errorf("seed %s: join error %q is not one line", seed, st.LastError)
		}
		if !strings.Contains(st.LastError, "failed to join "+seed) || !strings.Contains(st.LastError, "closed the connection") ||
			!strings.Contains(st.LastError, "cluster port") || !strings.Contains(st.LastError, "cluster_name") {
			t.Errorf("seed %s: join error %q, want memberlist's error and a hint naming the cluster port and cluster_name", seed, st.LastError)
		}
	}
}

// TestDrainingNodeDoesNotRejoin: a node that is stopping (its metadata
// says draining, as a node's shutdown sets before it leaves) starts no
// join attempt: when the others have left first, re-joining their
// addresses only made the whole cluster's stop wait on the attempts. The
// re-join timer still runs, and a node that stops draining re-joins.
func TestDrainingNodeDoesNotRejoin(t *testing.T) {
	sink := newLogSink(t)
	bAddr := freeLoopback(t)
	b := startNode(t, sink, Config{Name: "b", BindAddr: bAddr})
	fc := clock.NewFake(time.Unix(1_000_000, 0))
	a := startNode(t, sink, Config{Name: "a", Join: []string{bAddr}, Clock: fc})
	waitFor(t, 10*time.Second, "a to join b", func() bool { return a.Status().Join.Joined && len(a.Members()) == 2 })
	joined := a.Status().Join.LastAttempt

	if err := a.UpdateMeta(func(m *Meta) { m.State = StateDraining }); err != nil {
		t.Fatal(err)
	}
	if err := b.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a to see b leave", func() bool {
		for _, m := range a.Members() {
			if m.Name == "b" {
				return m.State == Left
			}
		}
		return true
	})
	// each re-join tick: wait until the loop has armed the next one, so
	// that the tick's attempt, if any, has been recorded
	tick := func() JoinStatus {
		t.Helper()
		fc.Advance(a.cfg.RejoinInterval)
		waitFor(t, 10*time.Second, "the next re-join timer", func() bool {
			return a.Status().Join.NextAttempt.Equal(fc.Now().Add(a.cfg.RejoinInterval))
		})
		return a.Status().Join
	}
	for range 3 {
		if st := tick(); !st.LastAttempt.Equal(joined) || st.Failures != 0 {
			t.Fatalf("a draining node tried to re-join: %+v", st)
		}
	}
	if err := a.UpdateMeta(func(m *Meta) { m.State = StateReady }); err != nil {
		t.Fatal(err)
	}
	if st := tick(); !st.LastAttempt.Equal(fc.Now()) {
		t.Fatalf("a node ready again did not re-join its missing seed: %+v", st)
	}
}

// TestRejoinErrorClearsWhenSeedsAreBack: a re-join that failed (a seed cut
// off or down) stops showing in the join status once every seed is a live
// member again. Status went on saying "re-joining 10.0.0.3:7946 failed"
// after the partition had healed and that node was back in the cluster.
func TestRejoinErrorClearsWhenSeedsAreBack(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	gone := startNode(t, sink, Config{Name: "c"})
	seed := gone.Addr()
	gone.Shutdown()
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr(), seed}})
	waitFor(t, 10*time.Second, "b's failed re-join of "+seed, func() bool {
		st := b.Status().Join
		return st.Joined && st.LastError != "" && slices.Contains(st.Tried, seed)
	})
	c := startNode(t, sink, Config{Name: "c", BindAddr: seed, Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "3 nodes", func() bool { return sameRing([]*Cluster{a, b, c}, 3) })
	waitFor(t, 10*time.Second, "b's join status without the old failure", func() bool {
		st := b.Status().Join
		return st.LastError == "" && st.Failures == 0
	})
}
