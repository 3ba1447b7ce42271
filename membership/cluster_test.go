package membership

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"
)

// startFive starts five nodes in random order, each joining a random node
// started before it, and waits until all agree on one ring. It returns the
// nodes in name order and the convergence time.
func startFive(t *testing.T, sink *logSink, profile Profile, fn *faultNet) ([]*Cluster, time.Duration) {
	t.Helper()
	nodes := make([]*Cluster, 5)
	start := time.Now()
	var started []*Cluster
	for _, i := range rand.Perm(5) {
		cfg := Config{Name: fmt.Sprintf("node-%d", i), Profile: profile}
		if len(started) > 0 {
			cfg.Join = []string{started[rand.IntN(len(started))].Addr()}
		}
		if fn != nil {
			cfg.WrapTransport = fn.wrap
		}
		nodes[i] = startNode(t, sink, cfg)
		started = append(started, nodes[i])
	}
	waitFor(t, 30*time.Second, "5 nodes to agree on one ring", func() bool { return sameRing(nodes, 5) })
	return nodes, time.Since(start)
}

// TestConvergeAndDetectFailure: five nodes joined in random order converge
// to one ring digest; one shut down without leaving is marked dead on all
// others and dropped from their rings. A never-drained subscriber on one
// node must not slow gossip down.
func TestConvergeAndDetectFailure(t *testing.T) {
	sink := newLogSink(t)
	nodes, conv := startFive(t, sink, ProfileFast, nil)
	t.Logf("fast profile: 5 nodes converged in %s, digest %s", conv, nodes[0].Ring().Digest())
	measureFailure(t, nodes)
}

// TestMeasureProfiles measures the lan profile, which takes tens of seconds;
// run it with PINGORA_MEASURE_LAN=1.
func TestMeasureProfiles(t *testing.T) {
	if os.Getenv("PINGORA_MEASURE_LAN") == "" {
		t.Skip("set PINGORA_MEASURE_LAN=1 to measure the lan profile")
	}
	sink := newLogSink(t)
	nodes, conv := startFive(t, sink, ProfileLAN, nil)
	t.Logf("lan profile: 5 nodes converged in %s", conv)
	measureFailure(t, nodes)
}

func measureFailure(t *testing.T, nodes []*Cluster) {
	t.Helper()
	stalled, _ := nodes[0].Subscribe(1) // never drained
	_ = stalled
	events, cancel := nodes[1].Subscribe(64)
	defer cancel()
	victim := nodes[4]
	victim.Shutdown()
	rest := nodes[:4]
	d := waitFor(t, 60*time.Second, "the killed node to be dead everywhere", func() bool {
		for _, n := range rest {
			if stateOn(n, victim.Name()) != Dead || ringHas(n, victim.Name()) {
				return false
			}
		}
		return true
	})
	t.Logf("failure detected on all 4 survivors in %s", d)
	// Under load a survivor may be suspected too, for a moment (fast probes
	// time out on a busy machine), and dropped from a ring until it
	// refutes: the survivors agree on the ring once that has passed.
	if !sameRing(rest, 4) {
		d := waitFor(t, 30*time.Second, "the survivors to agree on a ring of 4", func() bool { return sameRing(rest, 4) })
		t.Logf("survivors agreed on the ring %s later", d)
	}
	waitFor(t, 5*time.Second, "a fail event", func() bool {
		for {
			select {
			case ev := <-events:
				if ev.Type == EventFail && ev.Member.Name == victim.Name() {
					return true
				}
			default:
				return false
			}
		}
	})
}

// TestGracefulLeave: a node that leaves is dropped at once, well before
// failure detection could have noticed.
func TestGracefulLeave(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	c := startNode(t, sink, Config{Name: "c", Join: []string{a.Addr()}})
	all := []*Cluster{a, b, c}
	waitFor(t, 10*time.Second, "3 nodes on one ring", func() bool { return sameRing(all, 3) })
	start := time.Now()
	if err := c.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, 5*time.Second, "c to be left on a and b", func() bool {
		return stateOn(a, "c") == Left && stateOn(b, "c") == Left && sameRing(all[:2], 2)
	})
	t.Logf("graceful leave seen by all in %s (Leave returned after %s)", time.Since(start), time.Since(start)-d)
	c.Shutdown()
}

// TestRejoinAfterRestart: a node killed and restarted under the same name
// (on a new port, as a rescheduled pod would be) is alive again everywhere.
func TestRejoinAfterRestart(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	c := startNode(t, sink, Config{Name: "c", Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "3 nodes on one ring", func() bool { return sameRing([]*Cluster{a, b, c}, 3) })
	digest := a.Ring().Digest()
	c.Shutdown()
	waitFor(t, 10*time.Second, "c dead", func() bool { return stateOn(a, "c") == Dead && stateOn(b, "c") == Dead })
	c2 := startNode(t, sink, Config{Name: "c", Join: []string{b.Addr()}})
	all := []*Cluster{a, b, c2}
	waitFor(t, 10*time.Second, "restarted c back on every ring", func() bool {
		return sameRing(all, 3) && stateOn(a, "c") == Alive && stateOn(b, "c") == Alive
	})
	if a.Ring().Digest() != digest {
		t.Fatalf("digest %s after rejoin, want the original %s", a.Ring().Digest(), digest)
	}
}

// TestJoinRetriesUntilSeedUp: a node whose seed is not up yet keeps
// retrying and joins once the seed starts.
func TestJoinRetriesUntilSeedUp(t *testing.T) {
	sink := newLogSink(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seedAddr := l.Addr().String()
	l.Close()
	b := startNode(t, sink, Config{Name: "b", Join: []string{"localhost:" + portOf(seedAddr)}})
	waitFor(t, 10*time.Second, "a failed join attempt", func() bool { return b.Stats().JoinFailures > 0 })
	if st := b.Status().Join; st.Refused {
		t.Fatalf("join status %+v: a seed that is not up yet refused nothing", st)
	}
	a := startNode(t, sink, Config{Name: "a", BindAddr: seedAddr})
	waitFor(t, 10*time.Second, "b to join the late seed", func() bool { return sameRing([]*Cluster{a, b}, 2) })
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// TestMetaUpdateSeenByAll: metadata changes reach every node; draining takes
// a node off every ring while it stays a live member.
func TestMetaUpdateSeenByAll(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	c := startNode(t, sink, Config{Name: "c", Join: []string{a.Addr()}})
	all := []*Cluster{a, b, c}
	waitFor(t, 10*time.Second, "3 nodes on one ring", func() bool { return sameRing(all, 3) })
	for v := uint64(1); v <= 20; v++ { // a burst: coalesced, the last value wins
		if err := b.UpdateMeta(func(m *Meta) { m.ConfigVersion = v; m.State = StateReady }); err != nil {
			t.Fatal(err)
		}
	}
	seen := func(pred func(Meta) bool) func() bool {
		return func() bool {
			for _, n := range all {
				ok := false
				for _, m := range n.Members() {
					ok = ok || (m.Name == "b" && pred(m.Meta))
				}
				if !ok {
					return false
				}
			}
			return true
		}
	}
	d := waitFor(t, 5*time.Second, "config version 20 everywhere", seen(func(m Meta) bool { return m.ConfigVersion == 20 }))
	t.Logf("meta update seen by all in %s after %d pushes", d, b.Stats().MetaPushes)
	if p := b.Stats().MetaPushes; p > 5 {
		t.Fatalf("%d pushes for one burst, want coalescing", p)
	}
	if err := b.UpdateMeta(func(m *Meta) { m.State = StateDraining }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b off every ring", func() bool {
		return !ringHas(a, "b") && !ringHas(b, "b") && !ringHas(c, "b") && stateOn(a, "b") == Alive
	})
}

// TestWrongKeyOrLabelRefused: nodes without the gossip key, with another key
// or with another cluster label cannot join, and the log says why; their
// join status says that the seed refused them (Refused), which retrying
// does not heal.
func TestWrongKeyOrLabelRefused(t *testing.T) {
	key := []byte("0123456789abcdef")
	sink := newLogSink(t)
	seed := startNode(t, sink, Config{Name: "seed", SecretKey: key, Label: "prod"})
	cases := []struct {
		name, label, reason string
		key                 []byte
	}{
		{"wrong-key", "prod", "no installed keys could decrypt", []byte("fedcba9876543210")},
		{"no-key", "prod", "encryption is not configured", nil},
		{"wrong-label", "staging", "unacceptable label", key},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, sink, Config{Name: tc.name, SecretKey: tc.key, Label: tc.label, Join: []string{seed.Addr()}})
			waitFor(t, 10*time.Second, "a refused join", func() bool { return n.Stats().JoinFailures > 0 })
			waitFor(t, 5*time.Second, "the reason in the log", func() bool { return sink.contains(tc.reason) })
			if st := n.Status().Join; !st.Refused || st.Joined {
				t.Errorf("join status %+v, want refused and not joined", st)
			}
			if len(n.Members()) > 1 || stateOn(seed, tc.name) != "" {
				t.Fatalf("%s got in: %v", tc.name, seed.Members())
			}
		})
	}
	ok := startNode(t, sink, Config{Name: "good", SecretKey: key, Label: "prod", Join: []string{seed.Addr()}})
	waitFor(t, 10*time.Second, "the right key and label to join", func() bool { return sameRing([]*Cluster{seed, ok}, 2) })
}

// TestPartitionHeals: a 2|3 partition leaves two rings; after healing, seed
// re-joins merge them back into one.
func TestPartitionHeals(t *testing.T) {
	sink := newLogSink(t)
	fn := newFaultNet()
	nodes, _ := startFive(t, sink, ProfileFast, fn)
	left, right := nodes[:2], nodes[2:]
	for _, n := range right {
		fn.set(n.Addr(), 1)
	}
	d := waitFor(t, 20*time.Second, "two rings", func() bool { return sameRing(left, 2) && sameRing(right, 3) })
	t.Logf("partition split the ring in %s", d)
	fn.heal()
	d = waitFor(t, 20*time.Second, "one ring again", func() bool { return sameRing(nodes, 5) })
	t.Logf("partition healed into one ring in %s", d)
}

// TestGarbageOnGossipPort: junk on the gossip UDP and TCP port is dropped,
// logged as warnings (anyone can send it: it is not the node's error), and
// the node keeps gossiping: a new node joins through it and sees updates.
func TestGarbageOnGossipPort(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "2 nodes", func() bool { return sameRing([]*Cluster{a, b}, 2) })
	sendGarbage(t, a.Addr())
	if sink.contains("level=ERROR") {
		t.Fatal("junk from a sender logged an ERROR")
	}
	c := startNode(t, sink, Config{Name: "c", Join: []string{a.Addr()}})
	all := []*Cluster{a, b, c}
	waitFor(t, 10*time.Second, "c to join through a", func() bool { return sameRing(all, 3) })
	if err := a.UpdateMeta(func(m *Meta) { m.Zone = "z1" }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a's update on c", func() bool {
		for _, m := range c.Members() {
			if m.Name == "a" && m.Meta.Zone == "z1" {
				return true
			}
		}
		return false
	})
	if stateOn(b, "a") != Alive {
		t.Fatalf("a is %s on b after garbage", stateOn(b, "a"))
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty name accepted")
	}
	c, err := New(Config{Name: "x", BindAddr: "127.0.0.1:0", Profile: ProfileFast})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Leave(time.Second); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Leave before Start: %v", err)
	}
	c.Shutdown()
	c.Shutdown()
	if err := c.Start(); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
}

// TestAdvertiseBoundPort: bound to every address on a free port and
// advertised at an IP with port 0, a node is known at that IP and the bound
// port, and others join it there.
func TestAdvertiseBoundPort(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a", BindAddr: "0.0.0.0:0", AdvertiseAddr: "127.0.0.1:0"})
	host, port, _ := net.SplitHostPort(a.Addr())
	if host != "127.0.0.1" || port == "0" {
		t.Fatalf("advertised %q", a.Addr())
	}
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "2 nodes on one ring", func() bool { return sameRing([]*Cluster{a, b}, 2) })
	for _, m := range b.Members() {
		if m.Name == "a" && m.Addr != a.Addr() {
			t.Fatalf("b sees a at %q, want %q", m.Addr, a.Addr())
		}
	}
}

// TestRingOnlyNodesThatCanAnswer: a live member is on the ring only while
// it is ready and gossips a cluster RPC address; every ring carries that
// address; draining takes it off while it stays a live member.
func TestRingOnlyNodesThatCanAnswer(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	c := startNode(t, sink, Config{Name: "c", Join: []string{a.Addr()}, Meta: Meta{State: StateStarting}})
	all := []*Cluster{a, b, c}
	waitFor(t, 10*time.Second, "c alive on a and b, a and b on every ring", func() bool {
		return stateOn(a, "c") == Alive && stateOn(b, "c") == Alive && sameRing(all, 2)
	})
	if ringHas(a, "c") || ringHas(c, "c") {
		t.Fatal("a starting member is on the ring")
	}
	update := func(f func(*Meta)) {
		t.Helper()
		if err := c.UpdateMeta(f); err != nil {
			t.Fatal(err)
		}
	}
	update(func(m *Meta) { m.State = StateReady; m.Addrs.Cluster = "" })
	waitFor(t, 5*time.Second, "c ready everywhere", func() bool {
		for _, n := range all {
			for _, m := range n.Members() {
				if m.Name == "c" && m.Meta.State != StateReady {
					return false
				}
			}
		}
		return true
	})
	if ringHas(a, "c") || ringHas(b, "c") || ringHas(c, "c") {
		t.Fatal("a member without an RPC address is on the ring")
	}
	update(func(m *Meta) { m.Addrs.Cluster = "10.1.2.3:7947" })
	waitFor(t, 5*time.Second, "c on every ring with its address", func() bool {
		for _, n := range all {
			if n.Ring().Addr("c") != "10.1.2.3:7947" {
				return false
			}
		}
		return sameRing(all, 3)
	})
	update(func(m *Meta) { m.State = StateDraining })
	waitFor(t, 5*time.Second, "draining c off every ring, still alive", func() bool {
		return sameRing(all, 2) && !ringHas(a, "c") && !ringHas(c, "c") && stateOn(a, "c") == Alive
	})
}
