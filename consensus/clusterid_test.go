package consensus

import (
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

func applyClusterID(t *testing.T, f *fsm, idx uint64, id string) applyResult {
	t.Helper()
	data, err := msgpack.Marshal(clusterIDCmd{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: append([]byte{cmdClusterID}, data...)}).(applyResult)
}

// TestFSMClusterID: the first cluster ID applied wins; it is persisted
// with the applied state and carried by snapshots.
func TestFSMClusterID(t *testing.T) {
	f := newTestFSM(t, nil)
	if r := applyClusterID(t, f, 1, "aaaa"); r.Err != nil || r.ClusterID != "aaaa" {
		t.Fatalf("first ID: %+v", r)
	}
	if r := applyClusterID(t, f, 2, "bbbb"); r.Err != nil || r.ClusterID != "aaaa" {
		t.Fatalf("second ID: %+v, want the first kept", r)
	}
	if r := f.Apply(&raft.Log{Index: 3, Data: []byte{cmdClusterID, 0xc1}}).(applyResult); r.Err == nil {
		t.Fatal("a malformed cluster ID command applied")
	}
	applyPut(t, f, 4, "cfg", "x")
	g := newTestFSM(t, nil)
	g.path = f.path
	if err := g.load(); err != nil || g.st.ClusterID != "aaaa" {
		t.Fatalf("persisted state: ID %q, err %v", g.st.ClusterID, err)
	}
	snap, _ := f.Snapshot()
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	h := newTestFSM(t, nil)
	if err := h.Restore(io.NopCloser(&sink.Buffer)); err != nil || h.st.ClusterID != "aaaa" {
		t.Fatalf("restored from a snapshot: ID %q, err %v", h.st.ClusterID, err)
	}
}

// TestClusterIDReplicated: the first leader writes a cluster ID that every
// server applies and keeps across a restart; a server that reports another
// cluster's ID is not added.
func TestClusterIDReplicated(t *testing.T) {
	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	l := c.leader(20 * time.Second)
	waitFor(t, 10*time.Second, "one cluster ID on every server", func() bool {
		id := l.s.ClusterID()
		for _, n := range c.nodes {
			if n.s.ClusterID() == "" || n.s.ClusterID() != id {
				return false
			}
		}
		return true
	})
	id := l.s.ClusterID()
	if len(id) != 32 || l.s.Status().ClusterID != id {
		t.Fatalf("cluster ID %q, status %q", id, l.s.Status().ClusterID)
	}
	f := c.follower(l)
	f.s.Close()
	s, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ClusterID() != id {
		t.Fatalf("after a restart the data dir holds cluster ID %q, want %q", s.ClusterID(), id)
	}

	// Three servers alive, one from another cluster and one with state but
	// no cluster ID: only the new one joins.
	n4 := newNode(t, "n4", t.TempDir(), 0, nil)
	n5 := newNode(t, "n5", t.TempDir(), 0, nil)
	n6 := newNode(t, "n6", t.TempDir(), 0, nil)
	c.add(n4)
	sv := append(c.servers(), Server{ID: "n5", Addr: n5.s.Addr(), Alive: true, HasState: true, ClusterID: "0123456789abcdef0123456789abcdef"},
		Server{ID: "n6", Addr: n6.s.Addr(), Alive: true, HasState: true})
	for _, n := range c.live() {
		n.s.Reconcile(sv)
	}
	waitFor(t, 10*time.Second, "n4 added and given the cluster ID", func() bool {
		v, nv := voters(l)
		return (slices.Contains(v, "n4") || slices.Contains(nv, "n4")) && n4.s.ClusterID() == id
	})
	if v, nv := voters(l); slices.Contains(v, "n5") || slices.Contains(nv, "n5") || slices.Contains(v, "n6") || slices.Contains(nv, "n6") {
		t.Fatalf("a server of another cluster was added: %v %v", v, nv)
	}
}
