package membership

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/pingora-go/pingora-go/clock"
)

func TestSyncMsgRoundTrip(t *testing.T) {
	t.Parallel()
	m := syncMsg{Kind: syncAck, From: "n2", Hash: 1<<63 + 5}
	got, err := decodeSync(encodeSync(m))
	if err != nil || got != m {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {'X', 1}, {syncMsgType}, {syncMsgType, 0xc1}, encodeSync(syncMsg{Kind: 'z', From: "a"}), encodeSync(syncMsg{Kind: syncAck})} {
		if _, err := decodeSync(bad); err == nil {
			t.Errorf("decodeSync(%q) accepted", bad)
		}
	}
}

// syncFixture is an unstarted Cluster with a hand-made member table, for
// driving syncStep and handleSync directly.
func syncFixture(t *testing.T) (*Cluster, map[string]*peerSync, time.Time) {
	t.Helper()
	c, err := New(Config{Name: "x", BindAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	c.announced.Store(&announcement{hash: 42, at: t0})
	for _, name := range []string{"p", "q", "old"} {
		c.members[name] = &Member{Name: name, Addr: "127.0.0.1:1", State: Alive}
	}
	return c, make(map[string]*peerSync), t0
}

func ack(c *Cluster, peers map[string]*peerSync, from string, hash uint64, now time.Time) {
	c.handleSync(peers, encodeSync(syncMsg{Kind: syncAck, From: from, Hash: hash}), now)
}

func names(tgs []syncTarget) (asked, pushed []string) {
	for _, tg := range tgs {
		if tg.push {
			pushed = append(pushed, tg.name)
		} else {
			asked = append(asked, tg.name)
		}
	}
	slices.Sort(asked)
	slices.Sort(pushed)
	return asked, pushed
}

// TestSyncStepSchedule: a peer that acknowledged old metadata is asked
// once MetaAckTimeout (500ms, lan) has passed since the broadcast, then
// sent the metadata directly on later checks, backing off; an answer naming
// old metadata pushes at once. Peers that never spoke the protocol (older
// versions) and peers holding the announced metadata are left alone.
func TestSyncStepSchedule(t *testing.T) {
	c, peers, t0 := syncFixture(t)
	ack(c, peers, "p", 41, t0) // p holds older metadata
	ack(c, peers, "q", 42, t0) // q holds the announced metadata
	ack(c, peers, "ghost", 1, t0)
	if _, ok := peers["ghost"]; ok {
		t.Fatal("an ack from a non-member was recorded")
	}
	step := func(at time.Duration) (asked, pushed []string) {
		return names(c.syncStep(peers, t0.Add(at)))
	}
	if a, p := step(499 * time.Millisecond); a != nil || p != nil {
		t.Fatalf("before the ack timeout: asked %v pushed %v", a, p)
	}
	if a, p := step(500 * time.Millisecond); !slices.Equal(a, []string{"p"}) || p != nil {
		t.Fatalf("at the ack timeout: asked %v pushed %v, want p asked", a, p)
	}
	if got := c.pendingPeers(); !slices.Equal(got, []string{"p"}) {
		t.Fatalf("pending %v", got)
	}
	// Later checks push, at 250ms, 500ms, 1s... after the previous try.
	var pushes []time.Duration
	for at := 500 * time.Millisecond; at <= 5*time.Second; at += 50 * time.Millisecond {
		if _, p := step(at); len(p) > 0 {
			pushes = append(pushes, at)
		}
	}
	want := []time.Duration{750 * time.Millisecond, 1250 * time.Millisecond, 2250 * time.Millisecond, 4250 * time.Millisecond}
	if !slices.Equal(pushes, want) {
		t.Fatalf("pushes at %v, want %v", pushes, want)
	}
	ack(c, peers, "p", 42, t0.Add(5*time.Second))
	if a, p := step(10 * time.Second); a != nil || p != nil || len(c.pendingPeers()) != 0 {
		t.Fatalf("after p acknowledged: asked %v pushed %v pending %v", a, p, c.pendingPeers())
	}

	// A new announcement restarts the schedule; an answer naming older
	// metadata pushes at once.
	c.announced.Store(&announcement{hash: 43, at: t0.Add(20 * time.Second)})
	if a, _ := step(20*time.Second + 500*time.Millisecond); !slices.Equal(a, []string{"p", "q"}) {
		t.Fatalf("new announcement: asked %v, want p and q", a)
	}
	ack(c, peers, "p", 42, t0.Add(20*time.Second+501*time.Millisecond))
	select {
	case tg := <-c.pushPulls:
		if tg.name != "p" {
			t.Fatalf("pushed to %s, want p", tg.name)
		}
	default:
		t.Fatal("an answer naming old metadata did not push at once")
	}
	c.members["q"].State = Dead
	step(21 * time.Second)
	if _, ok := peers["q"]; ok {
		t.Fatal("a dead peer is still tracked")
	}
}

// TestFirstAckAnswered: the first acknowledgement from a peer is answered
// with ours, so a peer whose own first acknowledgement was dropped (it
// reached us before we had it in our member table) learns that we speak
// the protocol; later ones are not, so two nodes cannot loop. A query is
// always answered.
func TestFirstAckAnswered(t *testing.T) {
	c, peers, t0 := syncFixture(t)
	type sent struct {
		to   string
		kind byte
		hash uint64
	}
	var out []sent
	c.sentSync = func(name string, m syncMsg) { out = append(out, sent{name, m.Kind, m.Hash}) }
	c.members["p"].metaRaw = []byte("p's metadata")
	held := metaHash([]byte("p's metadata"))
	ack(c, peers, "p", 42, t0)
	if want := []sent{{"p", syncAck, held}}; !slices.Equal(out, want) {
		t.Fatalf("after p's first ack sent %v, want %v", out, want)
	}
	out = nil
	ack(c, peers, "p", 42, t0)
	ack(c, peers, "ghost", 42, t0)
	if out != nil {
		t.Fatalf("a second ack, or one from a non-member, was answered: %v", out)
	}
	c.handleSync(peers, encodeSync(syncMsg{Kind: syncQuery, From: "p"}), t0)
	if want := []sent{{"p", syncAck, held}}; !slices.Equal(out, want) {
		t.Fatalf("after p's query sent %v, want %v", out, want)
	}
}

// TestInboxNeverBlocksGossip: memberlist hands user messages to the
// delegate on its packet path; a full inbox drops and counts, never blocks.
func TestInboxNeverBlocksGossip(t *testing.T) {
	t.Parallel()
	var drops atomic.Uint64
	d := &delegate{inbox: make(chan []byte, 1), drops: &drops}
	done := make(chan struct{})
	go func() {
		for range 100 {
			d.NotifyMsg([]byte{syncMsgType})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("NotifyMsg blocked")
	}
	if drops.Load() != 99 {
		t.Fatalf("drops = %d, want 99", drops.Load())
	}
}

// udpDrop drops every UDP packet sent to a chosen address while on: lost
// gossip broadcasts, queries and pings. TCP (push/pull) still works.
type udpDrop struct {
	mu  sync.Mutex
	dst map[string]bool
}

func (u *udpDrop) set(addr string, on bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.dst == nil {
		u.dst = make(map[string]bool)
	}
	u.dst[addr] = on
}

func (u *udpDrop) dropped(addr string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.dst[addr]
}

func (u *udpDrop) wrap(nt memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return &udpDropTransport{NodeAwareTransport: nt, u: u}
}

type udpDropTransport struct {
	memberlist.NodeAwareTransport
	u *udpDrop
}

func (t *udpDropTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.u.dropped(addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *udpDropTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.u.dropped(a.Addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

// TestMetaDeliveredWhenBroadcastLost: with the lan profile and memberlist's
// periodic push/pull off, every UDP packet to c is dropped (the update's
// broadcasts, their relays and our query), so only the direct push/pull
// can bring a's metadata change to c. It arrives, c acknowledges it, and
// a counts one resend.
func TestMetaDeliveredWhenBroadcastLost(t *testing.T) {
	sink := newLogSink(t)
	drop := &udpDrop{}
	noPushPull := func(mc *memberlist.Config) { mc.PushPullInterval = 0 }
	start := func(name string, join ...string) *Cluster {
		c, err := New(Config{Name: name, BindAddr: "127.0.0.1:0", Profile: ProfileLAN, Join: join, WrapTransport: drop.wrap, Logger: sink.logger(),
			Meta: ringReady(name, Meta{})})
		if err != nil {
			t.Fatal(err)
		}
		c.tweak = noPushPull
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Shutdown() })
		return c
	}
	a := start("a")
	b, c := start("b", a.Addr()), start("c", a.Addr())
	all := []*Cluster{a, b, c}
	waitFor(t, 10*time.Second, "3 nodes on one ring", func() bool { return sameRing(all, 3) })
	drop.set(c.Addr(), true)
	if err := a.UpdateMeta(func(m *Meta) { m.Zone = "z2" }); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, 10*time.Second, "a's change on b and c", func() bool {
		return zoneOf(b, "a") == "z2" && zoneOf(c, "a") == "z2"
	})
	t.Logf("a's change reached c, every UDP packet to which is dropped, in %s (%d queries, %d resends)", d, a.Stats().MetaQueries, a.Stats().MetaResends)
	if a.Stats().MetaResends == 0 {
		t.Fatal("delivered without a resend: the test lost nothing")
	}
	drop.set(c.Addr(), false)
	waitFor(t, 10*time.Second, "c's acknowledgement", func() bool { return len(a.Status().MetaPending) == 0 })
}

func zoneOf(c *Cluster, name string) string {
	for _, m := range c.Members() {
		if m.Name == name {
			return m.Meta.Zone
		}
	}
	return ""
}

// TestSyncLoopQuiet: the sync loop stops its ticker once every live peer
// holds the announced metadata (an idle cluster wakes no node every
// MetaSyncInterval), and starts it again for a sync message or new
// metadata, ticking for as long as a peer lags.
func TestSyncLoopQuiet(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	c, err := New(Config{Name: "x", BindAddr: "127.0.0.1:0", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"p", "q"} {
		c.members[name] = &Member{Name: name, Addr: "127.0.0.1:1", State: Alive}
	}
	base := clk.Waiters()
	done := make(chan struct{})
	go func() { defer close(done); c.syncLoop() }()
	defer func() { close(c.stop); <-done }()
	interval := c.cfg.MetaSyncInterval
	ticking := func(want bool, what string) {
		t.Helper()
		waitFor(t, 10*time.Second, what, func() bool { return (clk.Waiters() > base) == want })
	}
	ticking(true, "the loop armed its ticker")
	clk.Advance(interval) // no peer speaks the protocol yet: nothing to check
	ticking(false, "the loop stopped ticking with nothing pending")

	hash := c.announced.Load().hash
	c.inbox <- encodeSync(syncMsg{Kind: syncAck, From: "p", Hash: hash - 1}) // p lags
	ticking(true, "an acknowledgement restarted the ticker")
	clk.Advance(interval)
	waitFor(t, 10*time.Second, "p listed as pending", func() bool { p := c.pending.Load(); return p != nil && len(*p) == 1 })
	clk.Advance(interval)
	if clk.Waiters() <= base {
		t.Fatal("the loop stopped ticking while p lags")
	}
	c.inbox <- encodeSync(syncMsg{Kind: syncAck, From: "p", Hash: hash}) // p caught up
	waitFor(t, 10*time.Second, "the loop stopped ticking once p caught up", func() bool {
		clk.Advance(interval)
		return clk.Waiters() == base
	})
	c.announce() // new metadata: the peers must be checked again
	ticking(true, "new metadata restarted the ticker")
}

// TestLeaveWait: Leave waits the whole timeout for its broadcasts while a
// live peer stays (it must learn of the leave from us), and two gossip
// rounds when every live peer is draining too (a whole cluster stopped at
// once: nobody would be left to finish the broadcast).
func TestLeaveWait(t *testing.T) {
	c, _, _ := syncFixture(t) // members p, q, old: alive, meta not draining
	c.gossipEvery = 200 * time.Millisecond
	check := func(what string, want time.Duration, wantStaying bool) {
		t.Helper()
		if got, staying := c.leaveWait(2 * time.Second); got != want || staying != wantStaying {
			t.Fatalf("%s: leaveWait = %s, %v; want %s, %v", what, got, staying, want, wantStaying)
		}
	}
	for _, m := range c.members {
		m.metaOK = true
	}
	check("peers staying", 2*time.Second, true)
	c.members["p"].Meta.State = StateDraining
	c.members["q"].State = Left
	check("one peer still staying", 2*time.Second, true)
	c.members["old"].metaOK = false
	c.members["old"].Meta.State = StateDraining
	check("a peer whose metadata is unreadable counts as staying", 2*time.Second, true)
	c.members["old"].metaOK = true
	check("every live peer draining", 400*time.Millisecond, false)
	c.members["x"] = &Member{Name: "x", State: Alive, metaOK: true} // this node
	check("this node does not count", 400*time.Millisecond, false)
	for _, name := range []string{"p", "old"} {
		c.members[name].State = Dead
	}
	check("no live peer", 400*time.Millisecond, false)
}
