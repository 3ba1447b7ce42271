package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pingora-go/pingora-go/membership"
	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy/handoff"
)

// calls records the calls fake parts receive, in order.
type calls struct {
	mu  sync.Mutex
	got []string
}

func (c *calls) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, s)
}

func (c *calls) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// fakePart is a part that records its calls and fails where told.
type fakePart struct {
	id                      string
	c                       *calls
	startErr, drainErr, err error
	identity                bool
}

func (f *fakePart) name() string { return f.id }
func (f *fakePart) start(context.Context) error {
	f.c.add("start " + f.id)
	return f.startErr
}
func (f *fakePart) drain(context.Context) error {
	f.c.add("drain " + f.id)
	return f.drainErr
}
func (f *fakePart) stop(context.Context) error {
	f.c.add("stop " + f.id)
	return f.err
}
func (f *fakePart) holdsIdentity() bool { return f.identity }

// stopOnly is a part without a drain.
type stopOnly struct{ f *fakePart }

func (s stopOnly) name() string                    { return s.f.name() }
func (s stopOnly) start(ctx context.Context) error { return s.f.start(ctx) }
func (s stopOnly) stop(ctx context.Context) error  { return s.f.stop(ctx) }

func fakeLifecycle(c *calls, parts ...part) *lifecycle {
	return &lifecycle{parts: parts, log: slog.New(slog.NewTextHandler(io.Discard, nil)), beforeStop: func() { c.add("before stop") }}
}

func TestPartsStartInOrderDrainAndStopInReverse(t *testing.T) {
	c := &calls{}
	l := fakeLifecycle(c, &fakePart{id: "a", c: c}, stopOnly{&fakePart{id: "b", c: c}}, &fakePart{id: "c", c: c})
	if err := l.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"start a", "start b", "start c", "before stop", "drain c", "drain a", "stop c", "stop b", "stop a"}
	if got := c.list(); !slices.Equal(got, want) {
		t.Fatalf("calls\n got %q\nwant %q", got, want)
	}
}

func TestPartFailingToStartStopsTheEarlierOnesInReverse(t *testing.T) {
	c := &calls{}
	boom := errors.New("boom")
	l := fakeLifecycle(c, &fakePart{id: "a", c: c}, &fakePart{id: "b", c: c}, &fakePart{id: "c", c: c, startErr: boom},
		&fakePart{id: "d", c: c})
	if err := l.start(context.Background()); !errors.Is(err, boom) || err.Error() != "boom" {
		t.Fatalf("start: %v, want boom alone", err)
	}
	want := []string{"start a", "start b", "start c", "before stop", "stop b", "stop a"}
	if got := c.list(); !slices.Equal(got, want) {
		t.Fatalf("calls\n got %q\nwant %q", got, want)
	}
	// Nothing runs any more: a shutdown after a failed start does nothing.
	if err := l.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.list(); !slices.Equal(got, want) {
		t.Fatalf("shutdown after a failed start called %q", got[len(want):])
	}
}

func TestPartFailingToStartReportsTheStopErrors(t *testing.T) {
	c := &calls{}
	boom, stuck := errors.New("boom"), errors.New("stuck")
	l := fakeLifecycle(c, &fakePart{id: "a", c: c, err: stuck}, &fakePart{id: "b", c: c, startErr: boom})
	err := l.start(context.Background())
	if !errors.Is(err, boom) || !errors.Is(err, stuck) || !strings.Contains(err.Error(), "a: stuck") {
		t.Fatalf("start: %v, want boom and a's stop error", err)
	}
}

func TestStopErrorsAreJoinedAndEveryPartStops(t *testing.T) {
	c := &calls{}
	e1, e2, e3 := errors.New("drain failed"), errors.New("stop failed"), errors.New("also failed")
	l := fakeLifecycle(c, &fakePart{id: "a", c: c, err: e3}, &fakePart{id: "b", c: c, drainErr: e1},
		&fakePart{id: "c", c: c, err: e2})
	if err := l.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := l.shutdown(context.Background())
	for _, e := range []error{e1, e2, e3} {
		if !errors.Is(err, e) {
			t.Errorf("shutdown error %q does not hold %q", err, e)
		}
	}
	for _, s := range []string{"b: drain failed", "c: stop failed", "a: also failed"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("shutdown error %q does not name %q", err, s)
		}
	}
	want := []string{"start a", "start b", "start c", "before stop", "drain c", "drain b", "drain a", "stop c", "stop b", "stop a"}
	if got := c.list(); !slices.Equal(got, want) {
		t.Fatalf("calls\n got %q\nwant %q", got, want)
	}
}

func TestStopIgnoresACancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the grace period is over before the parts stop
	var seen error
	l := fakeLifecycle(&calls{}, &step{id: "a", onStop: func(ctx context.Context) error { seen = ctx.Err(); return nil }})
	if err := l.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if seen != nil {
		t.Fatalf("stop saw %v: a stop must run to its end after the grace period", seen)
	}
}

// TestStepWaitsForItsGoroutines: a part's stop returns only once the
// goroutines it started have ended, even when they end after its stop
// function returned.
func TestStepWaitsForItsGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		quit, finish := make(chan struct{}), make(chan struct{})
		var ended bool
		s := &step{id: "loop",
			onStart: func(_ context.Context, g *group) error {
				g.goFunc(func() {
					<-quit
					<-finish // still busy after its stop signal
					ended = true
				})
				return nil
			},
			onStop: func(context.Context) error { close(quit); return nil },
		}
		l := fakeLifecycle(&calls{}, s)
		if err := l.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		stopped := make(chan error, 1)
		go func() { stopped <- l.shutdown(context.Background()) }()
		synctest.Wait() // everything is blocked: the loop on finish, so shutdown on the loop
		select {
		case err := <-stopped:
			t.Fatalf("shutdown returned (%v) while the part's goroutine runs", err)
		default:
		}
		close(finish)
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		if !ended {
			t.Fatal("shutdown returned before the goroutine ended")
		}
	})
}

// TestReleaseAndReopenOnlyTheIdentity: an upgrade stops the parts that
// hold the cluster identity in reverse order, and a failed one starts them
// again in order; the others run on.
func TestReleaseAndReopenOnlyTheIdentity(t *testing.T) {
	c := &calls{}
	l := fakeLifecycle(c, &fakePart{id: "state", c: c, identity: true}, &fakePart{id: "proxy", c: c},
		&fakePart{id: "members", c: c, identity: true}, &fakePart{id: "raft", c: c, identity: true},
		&fakePart{id: "upgrade", c: c})
	if err := l.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.release(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.reopen(context.Background())
	got := c.list()[5:]
	want := []string{"stop raft", "stop members", "stop state", "start state", "start members", "start raft"}
	if !slices.Equal(got, want) {
		t.Fatalf("calls\n got %q\nwant %q", got, want)
	}
}

// TestPartListOrder pins the node's start order: the drain order on
// SIGTERM and the stop order follow from it (see partList).
func TestPartListOrder(t *testing.T) {
	n := &Node{cfg: &config.Node{}}
	var got []string
	for _, p := range n.partList() {
		got = append(got, p.name())
	}
	want := []string{"health", "tracing", "prebind", "predecessor", "raft-state", "limits", "admin", "proxy", "cache", "rpc",
		"membership", "consensus", "gossip", "cache-ring", "upgrade"}
	if !slices.Equal(got, want) {
		t.Fatalf("parts\n got %q\nwant %q", got, want)
	}
}

// slowOrigin starts an origin whose first request arrives (closing
// arrived) and is answered "late" only once release is called; the
// test's end releases it too, before the server's Close, which waits for
// its handlers, also when the test fails.
func slowOrigin(t *testing.T) (addr string, arrived chan struct{}, release func()) {
	t.Helper()
	arrived, hold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		<-hold
		io.WriteString(w, "late")
	}))
	release = sync.OnceFunc(func() { close(hold) })
	t.Cleanup(slow.Close)
	t.Cleanup(release) // runs first
	return slow.Listener.Addr().String(), arrived, release
}

// TestShutdownDrainsWhileTheClusterRuns: on Shutdown the node turns
// readiness off and leaves the ring (draining in its gossiped metadata)
// while a request is still in flight, and raft, gossip and the admin API
// run until the proxy drained; then everything stops.
func TestShutdownDrainsWhileTheClusterRuns(t *testing.T) {
	slowAddr, arrived, releaseOnce := slowOrigin(t)
	n := startRaftNode(t, "d1", slowAddr, 1)
	waitUntil(t, "ready", func() bool { code, _ := get(t, "http://"+n.AdminAddr()+"/readyz"); return code == 200 })
	answered := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + n.ListenerAddrs()["http"] + "/")
		if err != nil {
			answered <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answered <- string(b)
	}()
	<-arrived
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- n.Shutdown(ctx)
	}()
	waitUntil(t, "draining in gossip", func() bool {
		mc := n.Members()
		return mc != nil && mc.Meta().State == membership.StateDraining
	})
	if code, _ := get(t, "http://"+n.AdminAddr()+"/readyz"); code != 503 {
		t.Fatalf("/readyz %d while draining, want 503", code)
	}
	if n.Store() == nil || n.Members() == nil {
		t.Fatal("raft or gossip stopped before the proxy drained")
	}
	// The metadata refresh, which runs until gossip stops, keeps saying
	// draining (it once announced "starting" again once readiness went off).
	if s := n.metaState(); s != membership.StateDraining {
		t.Fatalf("the metadata refresh would announce %v while draining", s)
	}
	releaseOnce()
	if got := <-answered; got != "late" {
		t.Fatalf("the request in flight got %q", got)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if n.Store() != nil || n.Members() != nil {
		t.Fatal("raft or gossip still open after Shutdown")
	}
}

// TestFailedHandOffReopensTheIdentity: a successor that asked for the
// node's cluster identity and then failed gets it back to this node: raft
// and gossip stop for the hand-off (the proxy serves on), and start again
// when the successor reports its failure.
func TestFailedHandOffReopensTheIdentity(t *testing.T) {
	n := startRaftNode(t, "h1", origin(t, "a"), 1)
	proxied := func() string { _, body := get(t, "http://"+n.ListenerAddrs()["http"]+"/"); return body }
	waitUntil(t, "the seeded config", func() bool { return proxied() == "a" })
	if err := n.OfferHandoff(); err != nil {
		t.Fatal(err)
	}
	in, err := handoff.Request(n.cfg.UpgradeSocketPath(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Fail(errors.New("test over")) // no-op once failed below
	if err := in.Release(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n.Store() != nil || n.Members() != nil {
		t.Fatal("raft or gossip still open after the release")
	}
	if body := proxied(); body != "a" {
		t.Fatalf("proxy during the hand-off: %q", body)
	}
	in.Fail(errors.New("successor gave up"))
	waitUntil(t, "raft and gossip back", func() bool {
		return n.Store() != nil && n.Store().IsLeader() && n.Members() != nil && n.Members().Meta().State == membership.StateReady
	})
}

// TestSuccessorThatCannotBindFailsBeforeTheRelease: a successor whose node
// file names a listener address it cannot bind fails while the old process
// still holds raft and gossip: the old process never stops them, so the
// cluster sees nothing. New listeners used to be bound after the release:
// the old process stopped raft and gossip and started them again (a
// leader handed leadership over, seen on three network namespaces with
// a node file naming an admin address not on the host).
func TestSuccessorThatCannotBindFailsBeforeTheRelease(t *testing.T) {
	n := startRaftNode(t, "h1", origin(t, "a"), 1)
	waitUntil(t, "raft leader", func() bool { return n.Store() != nil && n.Store().IsLeader() })
	st := n.Store()
	if err := n.OfferHandoff(); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	in, err := handoff.Request(n.cfg.UpgradeSocketPath(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg := *n.cfg
	cfg.AdminAddr = busy.Addr().String() // a new admin address, in use
	succ, err := New(&cfg, Options{Version: "test", Inherit: in, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil {
		err = succ.Start()
	}
	if err == nil {
		t.Fatal("the successor started on an address in use")
	}
	in.Fail(err)
	if !strings.Contains(err.Error(), "admin") {
		t.Errorf("the failure does not name the admin listener: %v", err)
	}
	if n.Store() != st || !st.IsLeader() {
		t.Fatal("the old process released raft for a successor that could not bind its listeners")
	}
}

// TestReleasedNodeStatusSaysHandingOver: between the release of raft and
// gossip for a successor and the start of its drain, the old process is
// still ready (it serves, and the node stays ready through an upgrade),
// and its status says why it has neither members nor raft: it named no
// reason, a ready node with no members.
func TestReleasedNodeStatusSaysHandingOver(t *testing.T) {
	n := startRaftNode(t, "h1", origin(t, "a"), 1)
	waitUntil(t, "ready", func() bool { return n.Status().Node.Ready })
	if err := n.OfferHandoff(); err != nil {
		t.Fatal(err)
	}
	in, err := handoff.Request(n.cfg.UpgradeSocketPath(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Fail(errors.New("test over"))
	if err := in.Release(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	st := n.Status()
	if st.Gossip != nil || st.Raft != nil {
		t.Fatalf("gossip or raft still shown after the release: %+v %+v", st.Gossip, st.Raft)
	}
	if !st.Node.Ready || !strings.Contains(st.Node.ReadyNote, "handing over to its successor") ||
		!strings.Contains(st.Node.ReadyNote, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("status of a released node: ready=%v note=%q", st.Node.Ready, st.Node.ReadyNote)
	}
}
