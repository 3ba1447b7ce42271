package membership

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

// TestCheckMetaSizeBoundsEveryValue: CheckMetaSize's size is at least the
// encoding of the metadata with any state, counters, config version and
// flags, so a node it accepts can never have an update refused.
func TestCheckMetaSizeBoundsEveryValue(t *testing.T) {
	m := largestMeta()
	m.Addrs.Proxy = m.Addrs.Proxy[:2] // room for a cluster ID
	m.ClusterID = strings.Repeat("f", 32)
	size, err := CheckMetaSize(m)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 1000 {
		v := m
		v.State = []NodeState{StateStarting, StateReady, StateDraining}[i%3]
		v.Health = Health{Healthy: int(r.Uint32()), Total: int(r.Uint32())}
		v.Load = Load{InFlight: int64(r.Uint32() >> r.IntN(32)), RPS: r.Float32() * float32(r.Int64())}
		v.ConfigVersion = r.Uint64() >> r.IntN(64)
		v.RaftState, v.RaftRecovering = r.IntN(2) == 0, r.IntN(2) == 0
		b, err := encodeMeta(v)
		if err != nil || len(b) > size {
			t.Fatalf("%+v: %d bytes, bound %d (%v)", v, len(b), size, err)
		}
	}
}

// TestCheckMetaSizeRefusesWhatCouldOutgrow: metadata that encodes now
// (short counters, config version 0) but would not with large ones is
// refused by CheckMetaSize, naming what takes the room; without the check
// UpdateMeta begins to fail at run time, once the counters grow.
func TestCheckMetaSizeRefusesWhatCouldOutgrow(t *testing.T) {
	v6 := func(i int) string {
		return "[fd12:3456:789a:bcde:f012:3456:789a:" + strings.Repeat("b", 3) + string(rune('a'+i)) + "]:8443"
	}
	m := Meta{Addrs: Addrs{Admin: "10.0.0.1:9000", Cluster: "10.0.0.1:7947", Raft: "10.0.0.1:7947"},
		ClusterID: strings.Repeat("f", 32)}
	for i := range 6 {
		m.Addrs.Proxy = append(m.Addrs.Proxy, v6(i))
	}
	// The version grows to the first length CheckMetaSize refuses.
	for m.Version = "v1.2.3-"; ; m.Version += "x" {
		if _, err := CheckMetaSize(m); err != nil {
			break
		}
	}
	b, err := encodeMeta(m.withDefaults())
	if err != nil {
		t.Fatalf("does not fit even at start: %v", err)
	}
	size, err := CheckMetaSize(m)
	if !errors.Is(err, ErrMetaTooLarge) || size <= memberlist.MetaMaxSize {
		t.Fatalf("CheckMetaSize: %d, %v", size, err)
	}
	for _, want := range []string{"6 proxy listener address", m.Addrs.Proxy[0], `version "` + m.Version + `"`, "cluster ID (32 characters)", "over memberlist's limit of 512 by 1:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Logf("%d bytes at start, %d at most: %v", len(b), size, err)
	c, err := New(Config{Name: "x", BindAddr: "127.0.0.1:0", Meta: m})
	if err != nil {
		t.Fatal(err)
	}
	err = c.UpdateMeta(func(mm *Meta) { *mm = MaxMeta(*mm) })
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("UpdateMeta at the largest values: %v, want ErrMetaTooLarge", err)
	}
}
