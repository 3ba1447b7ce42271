package consensus

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestInmemTransportPartition runs a cluster over raft's in-memory
// transport (the Config.Transport seam) and partitions the leader away.
func TestInmemTransportPartition(t *testing.T) {
	trans := map[string]*raft.InmemTransport{}
	c := &cluster{t: t, down: map[string]bool{}, left: map[string]bool{}}
	for i := range 3 {
		id := fmt.Sprintf("n%d", i+1)
		_, tr := raft.NewInmemTransport(raft.ServerAddress("inmem-" + id))
		trans[id] = tr
		c.add(newNode(t, id, t.TempDir(), 3, func(cfg *Config) { cfg.Transport = tr }))
	}
	for a, ta := range trans {
		for b, tb := range trans {
			if a != b {
				ta.Connect(tb.LocalAddr(), tb)
			}
		}
	}
	c.reconcile()
	l := c.put("cfg", []byte("v1"))
	if l.s.Addr() != "inmem-"+l.id {
		t.Fatalf("Addr = %q", l.s.Addr())
	}
	// Partition the leader from both followers, in both directions.
	for id, tr := range trans {
		if id != l.id {
			tr.Disconnect(trans[l.id].LocalAddr())
			trans[l.id].Disconnect(tr.LocalAddr())
		}
	}
	_, err := l.s.Put(ctxT(t, 10*time.Second), "cfg", []byte("lost"), -1)
	if !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("partitioned leader Put err = %v, want ErrNoQuorum", err)
	}
	c.down[l.id] = true        // the majority side only
	c.put("cfg", []byte("v2")) // the majority writes
	if d, _ := l.s.Get("cfg"); string(d.Content) != "v1" {
		t.Fatalf("minority Get = %q, want v1", d.Content)
	}
}
