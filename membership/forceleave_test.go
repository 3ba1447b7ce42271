package membership

import (
	"errors"
	"testing"
	"time"
)

// TestForceLeave: a member shut down without leaving is dead everywhere;
// force-leave on one node drops it from every node's member list. A live
// member, this node and an unknown name are refused; the forced-out member
// is a member again when it really rejoins.
func TestForceLeave(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a"})
	b := startNode(t, sink, Config{Name: "b", Join: []string{a.Addr()}})
	c := startNode(t, sink, Config{Name: "c", Join: []string{a.Addr()}})
	d := startNode(t, sink, Config{Name: "d", Join: []string{a.Addr()}})
	waitFor(t, 10*time.Second, "4 nodes on one ring", func() bool { return sameRing([]*Cluster{a, b, c, d}, 4) })

	for _, tc := range []struct {
		name string
		want error
	}{{"b", ErrMemberAlive}, {"a", ErrMemberAlive}, {"nobody", ErrNoSuchMember}} {
		if err := a.ForceLeave(tc.name); !errors.Is(err, tc.want) {
			t.Errorf("ForceLeave(%q) = %v, want %v", tc.name, err, tc.want)
		}
	}
	events, cancel := b.Subscribe(16)
	defer cancel()
	d.Shutdown()
	waitFor(t, 10*time.Second, "d dead on a, b and c", func() bool {
		return stateOn(a, "d") == Dead && stateOn(b, "d") == Dead && stateOn(c, "d") == Dead
	})
	if err := a.ForceLeave("d"); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 10*time.Second, "d gone from every member list", func() bool {
		return stateOn(a, "d") == "" && stateOn(b, "d") == "" && stateOn(c, "d") == ""
	})
	t.Logf("force-leave seen by all in %s", took)
	waitFor(t, 5*time.Second, "b told subscribers d left", func() bool {
		for {
			select {
			case ev := <-events:
				if ev.Type == EventLeave && ev.Member.Name == "d" && ev.Member.State == Left {
					return true
				}
			default:
				return false
			}
		}
	})
	if err := b.ForceLeave("d"); !errors.Is(err, ErrNoSuchMember) {
		t.Fatalf("second ForceLeave(d) = %v, want ErrNoSuchMember", err)
	}

	d2 := startNode(t, sink, Config{Name: "d", Join: []string{c.Addr()}})
	waitFor(t, 10*time.Second, "d back on every ring after it rejoined", func() bool {
		return sameRing([]*Cluster{a, b, c, d2}, 4) && stateOn(a, "d") == Alive
	})
}

// TestForceLeaveMessages: malformed user messages are counted and dropped.
func TestForceLeaveMessages(t *testing.T) {
	f := newForceLeaves()
	for _, b := range [][]byte{nil, {msgForceLeave}, {9, 'x'}, append([]byte{msgForceLeave}, make([]byte, maxNameLen+1)...)} {
		f.receive(b)
	}
	if got := f.drops.Load(); got != 4 {
		t.Fatalf("drops = %d, want 4", got)
	}
	f.receive(append([]byte{msgForceLeave}, "n1"...))
	if got := <-f.in; got != "n1" {
		t.Fatalf("received %q", got)
	}
	f.gone["old"] = time.Unix(0, 0)
	f.gone["new"] = time.Unix(1000, 0)
	f.expire(time.Unix(1000, 0).Add(time.Minute))
	if _, ok := f.gone["old"]; ok || len(f.gone) != 1 {
		t.Fatalf("expire kept %v", f.gone)
	}
}
