package membership

import (
	"errors"
	"testing"
	"time"
)

// TestForeignClusterRefused: a node of cluster B joining a seed of cluster
// A is refused on both sides and told why through Refused; a node without
// a cluster ID joins either; one that bridges both clusters does not merge
// them.
func TestForeignClusterRefused(t *testing.T) {
	sink := newLogSink(t)
	a := startNode(t, sink, Config{Name: "a", Meta: Meta{ClusterID: "aaaa"}})
	b := startNode(t, sink, Config{Name: "b", Meta: Meta{ClusterID: "bbbb"}, Join: []string{a.Addr()}})
	var err error
	select {
	case err = <-b.Refused():
	case <-time.After(10 * time.Second):
		t.Fatal("b's join to another cluster was not refused")
	}
	var fe *ForeignClusterError
	if !errors.As(err, &fe) || !errors.Is(err, ErrForeignCluster) || fe.Addr != a.Addr() || fe.Node != "a" ||
		fe.Cluster != "aaaa" || fe.Own != "bbbb" {
		t.Fatalf("Refused: %#v", err)
	}
	t.Logf("refused: %v", err)

	fresh := startNode(t, sink, Config{Name: "fresh", Join: []string{a.Addr(), b.Addr()}})
	waitFor(t, 10*time.Second, "fresh a member of both", func() bool {
		return stateOn(fresh, "a") == Alive && stateOn(fresh, "b") == Alive && stateOn(a, "fresh") == Alive && stateOn(b, "fresh") == Alive
	})
	// fresh gossips about b to a and about a to b for a while: neither
	// takes the other in.
	deadline := time.Now().Add(2 * time.Second)
	waitFor(t, 5*time.Second, "two seconds of gossip", func() bool {
		if stateOn(a, "b") != "" || stateOn(b, "a") != "" {
			t.Fatalf("the clusters merged through fresh: a sees b %q, b sees a %q", stateOn(a, "b"), stateOn(b, "a"))
		}
		return time.Now().After(deadline)
	})
	select {
	case err := <-a.Refused():
		t.Fatalf("a, which joined nobody, was told: %v", err)
	default:
	}

	// A seed that had no ID yet when d joined it gets one: d is told.
	c := startNode(t, sink, Config{Name: "c"})
	d := startNode(t, sink, Config{Name: "d", Meta: Meta{ClusterID: "dddd"}, Join: []string{c.Addr()}})
	waitFor(t, 10*time.Second, "d joined c", func() bool { return stateOn(d, "c") == Alive && stateOn(c, "d") == Alive })
	if err := c.UpdateMeta(func(m *Meta) { m.ClusterID = "cccc" }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.Refused():
		if !errors.As(err, &fe) || fe.Node != "c" || fe.Cluster != "cccc" {
			t.Fatalf("Refused: %#v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("d was not told that its seed c belongs to another cluster")
	}
}
