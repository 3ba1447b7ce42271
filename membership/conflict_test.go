package membership

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

func addrOn(c *Cluster, name string) string {
	for _, m := range c.Members() {
		if m.Name == name && m.State == Alive {
			return m.Addr
		}
	}
	return ""
}

// TestNameConflictRefused (issue 12): a second node with the name of a live
// node stops with ErrNameConflict and says where the other one is; the
// cluster keeps the first.
func TestNameConflictRefused(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "2 nodes", func() bool { return sameRing([]*Cluster{a, b}, 2) })
	dup := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	select {
	case err := <-dup.Err():
		if !errors.Is(err, ErrNameConflict) || !strings.Contains(err.Error(), "alive at "+b.Addr()) {
			t.Fatalf("Err: %v", err)
		}
		t.Logf("the second b stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the second b runs on")
	}
	if st := dup.Status().Join; st.Joined || !strings.Contains(st.LastError, "name conflict") {
		t.Fatalf("join status %+v", st)
	}
	if err := dup.Leave(time.Second); !errors.Is(err, ErrNameConflict) {
		t.Fatalf("Leave after a conflict: %v (a leave would be taken for the other b's)", err)
	}
	if got := addrOn(a, "b"); got != b.Addr() {
		t.Fatalf("a sees b at %q, want the first b at %s", got, b.Addr())
	}
}

// TestRestartKeepsName: the same node restarted at once, at the same address
// (peers still think the old one alive) or at a new one (peers still list
// the old address, which no longer answers), is let back in under its name.
func TestRestartKeepsName(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "2 nodes", func() bool { return sameRing([]*Cluster{a, b}, 2) })
	addr := b.Addr()
	b.Shutdown()
	same := startNode(t, sink, Config{Name: "b", BindAddr: addr, Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "b back at the same address", func() bool { return same.Status().Join.Joined && addrOn(a, "b") == addr })
	same.Shutdown()
	moved := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	waitFor(t, 15*time.Second, "b back at a new address", func() bool {
		return moved.Status().Join.Joined && addrOn(a, "b") == moved.Addr()
	})
	for _, c := range []*Cluster{same, moved} {
		select {
		case err := <-c.Err():
			t.Fatalf("a restart was refused: %v", err)
		default:
		}
	}
}

// TestRejoinKeepsNameFromNewcomer: a member whose re-join reaches a seed
// now run by a newcomer with the member's name (a host set up with a copy
// of its node file, at the address of a departed node) keeps running and
// keeps its name: the newcomer is the one to rename. Before, the member
// found the newcomer answering a ping for its name and stopped itself (on
// a real cluster, the raft leader).
func TestRejoinKeepsNameFromNewcomer(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	gone := startNode(t, sink, Config{Name: "gone"})
	seed := gone.Addr()
	gone.Shutdown()
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr(), seed}})
	waitFor(t, 10*time.Second, "2 nodes", func() bool { return sameRing([]*Cluster{a, b}, 2) })
	since := time.Now()
	dup := startNode(t, sink, Config{Name: "b", BindAddr: seed})
	// b re-joins its missing seed every RejoinInterval (1 s with fast); the
	// attempt is recorded after its conflict check.
	waitFor(t, 10*time.Second, "b's re-join of the newcomer's address", func() bool {
		st := b.Status().Join
		return st.LastAttempt.After(since) && slices.Contains(st.Tried, seed) && strings.Contains(st.LastError, "name conflict")
	})
	select {
	case err := <-b.Err():
		t.Fatalf("the member stopped for a newcomer with its name: %v", err)
	default:
	}
	if st := b.Status().Join; !strings.Contains(st.LastError, "give that node a unique name") {
		t.Fatalf("b's join status does not say what to do: %q", st.LastError)
	}
	if !sink.contains("keeps it: rename the other node") {
		t.Fatal("b logged no warning naming the newcomer")
	}
	if got := addrOn(a, "b"); got != b.Addr() {
		t.Fatalf("a sees b at %q, want %s", got, b.Addr())
	}
	if stateOn(b, "a") != Alive || !ringHas(a, "b") {
		t.Fatalf("b left the cluster: a is %q to b, a's ring has b: %v", stateOn(b, "a"), ringHas(a, "b"))
	}
	_ = dup
}

// TestAdvertisedAddressIsAnotherNodes: a node whose advertise_addr is a
// live node's gossip address (its node file copied from that node's), with
// that address as its only seed, stops with ErrAddressConflict naming the
// other node. It took itself for the cluster's first node before: joined,
// alone, with nothing in its status, while the others never saw it.
func TestAdvertisedAddressIsAnotherNodes(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	b := startNode(t, sink, Config{Name: "b", AdvertiseAddr: a.Addr(), Join: []string{a.Addr()}})
	select {
	case err := <-b.Err():
		if !errors.Is(err, ErrAddressConflict) || !strings.Contains(err.Error(), `node "a" alive at `+a.Addr()) {
			t.Fatalf("Err: %v", err)
		}
		t.Logf("b stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatalf("b runs on; join status %+v", b.Status().Join)
	}
	if st := b.Status().Join; st.Joined || !strings.Contains(st.LastError, "address conflict") {
		t.Fatalf("b's join status %+v", st)
	}
	if got := addrOn(a, "a"); got != a.Addr() || len(a.Members()) != 1 {
		t.Fatalf("a's members %+v after b's attempt", a.Members())
	}
}

// TestAdvertisedAddressIsAnotherNodesViaSeed: the same mistake, with
// another member as the seed: the state it answers lists a at this
// node's advertised address, which is refused and found out.
func TestAdvertisedAddressIsAnotherNodesViaSeed(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	c := startNode(t, sink, Config{Name: "c", Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "2 nodes", func() bool { return sameRing([]*Cluster{a, c}, 2) })
	b := startNode(t, sink, Config{Name: "b", AdvertiseAddr: a.Addr(), Join: []string{c.Addr()}})
	select {
	case err := <-b.Err():
		if !errors.Is(err, ErrAddressConflict) || !strings.Contains(err.Error(), `node "a" alive at `+a.Addr()) {
			t.Fatalf("Err: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("b runs on; join status %+v", b.Status().Join)
	}
	if st := b.Status().Join; st.Joined {
		t.Fatalf("b's join status %+v", st)
	}
	// c took b's state in the join (memberlist merges the joiner's
	// state after answering with its own): b at a's address is ignored
	// there, not listed to be declared failed by every node.
	waitFor(t, 10*time.Second, "c to ignore b", func() bool { return sink.contains(`ignoring alive message for 'b'`) })
	for _, n := range []*Cluster{a, c} {
		for _, m := range n.Members() {
			if m.Name == "b" {
				t.Fatalf("%s lists b: %+v", n.Name(), m)
			}
		}
	}
}

// TestSelfSeedNothingThere: a node whose only seed is its advertised
// address, where nothing answers (a mistyped advertise_addr), does not
// take itself for the cluster's first node: the join fails, and says why.
func TestSelfSeedNothingThere(t *testing.T) {
	sink := newLogSink(t)
	nowhere := freeLoopback(t)
	b := startNode(t, sink, Config{Name: "b", AdvertiseAddr: nowhere, Join: []string{nowhere}})
	waitFor(t, 20*time.Second, "a failed join", func() bool { return b.Status().Join.Failures > 0 })
	st := b.Status().Join
	if st.Joined || !strings.Contains(st.LastError, "does not reach this node") {
		t.Fatalf("join status %+v", st)
	}
}

// TestNewNodeAtDeadNodesAddressRetriesEachProbe: a node with a new name at
// the address of a node that just died (a container given the IP of one
// killed a moment before, as Docker does) is refused until the members
// declare the dead node dead, a few seconds; meanwhile its join is retried
// every probe interval, not on the doubling backoff, which ran seconds
// past that (in containers: dead at 5 s, joined at 8.5 s; up to
// JoinBackoffMax). Then it joins, and does not stop. The lan profile keeps
// b alive in a's view for seconds (suspicion 4 s), while y's injected
// clock runs its retries at once.
func TestNewNodeAtDeadNodesAddressRetriesEachProbe(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a", Profile: ProfileLAN})
	b := startNode(t, sink, Config{Name: "b", Profile: ProfileLAN, Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "2 nodes", func() bool { return sameRing([]*Cluster{a, b}, 2) })
	addr := b.Addr()
	b.Shutdown() // killed: no leave
	fc := clock.NewFake(time.Unix(1_000_000, 0))
	y := startNode(t, sink, Config{Name: "y", Profile: ProfileLAN, BindAddr: addr, Join: []string{a.Addr()}, Clock: fc})
	// lan: backoff 500ms, 1s, 2s, 4s; the probe interval is 1s.
	for k, want := range []time.Duration{500 * time.Millisecond, time.Second, time.Second, time.Second} {
		var st JoinStatus
		waitFor(t, 10*time.Second, fmt.Sprintf("failed attempt %d", k+1), func() bool {
			st = y.Status().Join
			return st.Joined || st.Failures == k+1 && !st.NextAttempt.IsZero() && st.LastAttempt.Equal(fc.Now())
		})
		if st.Joined {
			t.Fatalf("y joined at attempt %d, before a declared b dead (b is %q to a): too slow a machine for this test", k+1, stateOn(a, "b"))
		}
		if !strings.Contains(st.LastError, `address conflict: peers list node "b"`) {
			t.Fatalf("attempt %d: %+v", k+1, st)
		}
		if got := st.NextAttempt.Sub(fc.Now()); got != want {
			t.Fatalf("attempt %d failed for b, which a has yet to declare dead: next attempt in %v, want %v", k+1, got, want)
		}
		fc.Advance(want)
	}
	waitFor(t, 20*time.Second, "a to declare b dead", func() bool { return stateOn(a, "b") == Dead })
	// Until then a gossiped to b's address, y's: a's own alive messages
	// listed a on y, which took that for being joined by a, and stopped
	// joining, while a did not list y.
	if st := y.Status().Join; st.Joined {
		t.Fatalf("y counts as joined (%+v) while a refuses it: a lists y as %q", st, stateOn(a, "y"))
	}
	fc.Advance(time.Second)
	waitFor(t, 10*time.Second, "y joined, alive on a (a y that counts itself joined by a, without a join, is not listed by a)", func() bool {
		if st := y.Status().Join; !st.Joined && st.LastAttempt.Equal(fc.Now()) && st.NextAttempt.After(fc.Now()) {
			fc.Advance(st.NextAttempt.Sub(fc.Now())) // a's state still listed b alive at that attempt
		}
		return y.Status().Join.Joined && addrOn(a, "y") == addr
	})
	select {
	case err := <-y.Err():
		t.Fatalf("y stopped: %v", err)
	default:
	}
}
