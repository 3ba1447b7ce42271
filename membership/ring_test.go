package membership

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func fixedRing(n int) *Ring {
	m := make(map[string]int)
	for i := range n {
		m[fmt.Sprintf("node-%d", i)] = 1
	}
	return NewRing(1, "node-0", m)
}

// TestKeyMovementOnJoin measures the fraction of 10,000 keys that change
// owner when a 5th node joins 4: consistent hashing moves about 1/5, and
// only to the newcomer.
func TestKeyMovementOnJoin(t *testing.T) {
	for _, n := range []int{4, 9} {
		before, after := fixedRing(n), fixedRing(n+1)
		newcomer := fmt.Sprintf("node-%d", n)
		const keys = 10000
		moved := 0
		for i := range keys {
			k := fmt.Sprintf("key-%d", i)
			a, _ := before.Owner(k)
			b, _ := after.Owner(k)
			if a != b {
				moved++
				if b != newcomer {
					t.Fatalf("%s moved from %s to %s, not to the newcomer", k, a, b)
				}
			}
		}
		frac, ideal := float64(moved)/keys, 1/float64(n+1)
		t.Logf("%d -> %d nodes: %.2f%% of %d keys moved (ideal %.2f%%)", n, n+1, 100*frac, keys, 100*ideal)
		// 160 points per node give a share within about +-30% of ideal.
		if math.Abs(frac-ideal) > 0.3*ideal {
			t.Fatalf("moved %.3f, want %.3f +- 30%%", frac, ideal)
		}
	}
}

func TestRingOwnersAndShares(t *testing.T) {
	r := fixedRing(5)
	owners := r.Owners("user:42", 3)
	if len(owners) != 3 || owners[0] == owners[1] || owners[1] == owners[2] || owners[0] == owners[2] {
		t.Fatalf("owners = %v, want 3 distinct", owners)
	}
	if o, _ := r.Owner("user:42"); o != owners[0] {
		t.Fatalf("Owner %s != Owners[0] %s", o, owners[0])
	}
	if got := r.Owners("k", 10); len(got) != 5 {
		t.Fatalf("Owners(10) on 5 nodes = %v", got)
	}
	sum := 0.0
	for name, s := range r.Shares() {
		sum += s
		if s < 0.1 || s > 0.3 {
			t.Errorf("%s share %.3f far from 0.2", name, s)
		}
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Fatalf("shares sum to %f", sum)
	}
	heavy := NewRing(1, "a", map[string]int{"a": 3, "b": 1})
	if s := heavy.Shares()["a"]; s < 0.65 || s > 0.85 {
		t.Fatalf("weight 3 of 4 got share %.3f", s)
	}
	empty := NewRing(0, "a", nil)
	if o, self := empty.Owner("k"); o != "" || self || len(empty.Owners("k", 2)) != 0 {
		t.Fatal("empty ring returned an owner")
	}
	if NewRing(1, "x", map[string]int{"a": 1, "b": 2}).Digest() == NewRing(9, "y", map[string]int{"a": 1, "b": 1}).Digest() {
		t.Fatal("digest ignores weights")
	}
	if NewRing(1, "x", map[string]int{"a": 1}).Digest() != NewRing(9, "y", map[string]int{"a": 1}).Digest() {
		t.Fatal("digest depends on version or self")
	}
}

func TestOwnerDoesNotAllocate(t *testing.T) {
	r := fixedRing(5)
	dst := make([]string, 0, 3)
	if a := testing.AllocsPerRun(1000, func() { r.Owner("user:42") }); a != 0 {
		t.Fatalf("Owner allocs = %v", a)
	}
	if a := testing.AllocsPerRun(1000, func() { dst = r.AppendOwners(dst[:0], "user:42", 3) }); a != 0 {
		t.Fatalf("AppendOwners allocs = %v", a)
	}
}

func BenchmarkRingOwner(b *testing.B) {
	r := fixedRing(5)
	b.ReportAllocs()
	for b.Loop() {
		r.Owner("user:42")
	}
}

func BenchmarkRingAppendOwners3(b *testing.B) {
	r := fixedRing(5)
	dst := make([]string, 0, 3)
	b.ReportAllocs()
	for b.Loop() {
		dst = r.AppendOwners(dst[:0], "user:42", 3)
	}
}

func TestOnRing(t *testing.T) {
	ready := Meta{State: StateReady, Addrs: Addrs{Cluster: "10.0.0.1:7947"}}
	with := func(f func(*Member)) *Member {
		m := &Member{Name: "n", State: Alive, Meta: ready, metaOK: true}
		f(m)
		return m
	}
	for name, tc := range map[string]struct {
		m    *Member
		want bool
	}{
		"ready with an RPC address": {with(func(*Member) {}), true},
		"suspect":                   {with(func(m *Member) { m.State = Suspect }), true},
		"starting":                  {with(func(m *Member) { m.Meta.State = StateStarting }), false},
		"draining":                  {with(func(m *Member) { m.Meta.State = StateDraining }), false},
		"no RPC address":            {with(func(m *Member) { m.Meta.Addrs.Cluster = "" }), false},
		"dead":                      {with(func(m *Member) { m.State = Dead }), false},
		"left":                      {with(func(m *Member) { m.State = Left }), false},
		"metadata did not decode":   {with(func(m *Member) { m.metaOK = false }), false},
	} {
		if got := onRing(tc.m); got != tc.want {
			t.Errorf("%s: onRing = %v, want %v", name, got, tc.want)
		}
	}
}

// TestRingCarriesAddrs: the snapshot answers each owner's RPC address
// without the member list, and the digest covers the addresses.
func TestRingCarriesAddrs(t *testing.T) {
	ms := []RingMember{{"a", 1, "10.0.0.1:7947"}, {"b", 1, "10.0.0.2:7947"}, {"c", 2, "10.0.0.3:7947"}, {"off", 0, "x:1"}}
	r := NewRingOf(1, "b", ms)
	if r.Len() != 3 || r.Addr("off") != "" || r.Addr("nobody") != "" {
		t.Fatalf("members %v, Addr(off) %q", r.Members(), r.Addr("off"))
	}
	for i := range 100 {
		key := fmt.Sprintf("key-%d", i)
		id, addr, self := r.OwnerAddr(key)
		owner, ownSelf := r.Owner(key)
		if id != owner || self != ownSelf || addr == "" || addr != r.Addr(id) {
			t.Fatalf("OwnerAddr(%s) = %s %s %v; Owner = %s %v; Addr = %s", key, id, addr, self, owner, ownSelf, r.Addr(id))
		}
	}
	moved := slices.Clone(ms)
	moved[0].Addr = "10.0.0.9:7947"
	if NewRingOf(1, "b", moved).Digest() == r.Digest() {
		t.Fatal("digest ignores addresses")
	}
	if a := testing.AllocsPerRun(1000, func() { r.OwnerAddr("user:42"); r.Addr("c") }); a != 0 {
		t.Fatalf("OwnerAddr+Addr allocs = %v", a)
	}
	if empty := NewRingOf(0, "a", nil); empty.Addr("a") != "" {
		t.Fatal("empty ring has an address")
	}
	if id, addr, _ := NewRingOf(0, "a", nil).OwnerAddr("k"); id != "" || addr != "" {
		t.Fatal("empty ring has an owner")
	}
}
