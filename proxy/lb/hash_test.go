package lb

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/pingora-go/pingora-go/ketama"
)

// TestHashDownMovesOnlyItsKeys: with one backend down, keys owned by the
// others stay put, and for ketama the down backend's keys go to the next
// distinct backend on the ring. Recovery restores the old mapping.
func TestHashDownMovesOnlyItsKeys(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"ketama", "fnv"} {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			bs := mkBackends(1, 1, 1, 1, 1)
			s := mustNew(t, p, bs)
			ring := ketama.New([]ketama.Bucket{
				{Addr: bs[0].Addr, Weight: 1}, {Addr: bs[1].Addr, Weight: 1}, {Addr: bs[2].Addr, Weight: 1},
				{Addr: bs[3].Addr, Weight: 1}, {Addr: bs[4].Addr, Weight: 1},
			})
			const keys = 2000
			before := make([]int, keys)
			for n := range keys {
				before[n], _ = s.Select(keyOf(n))
			}
			bs[1].State.SetHealthy(false)
			moved := 0
			for n := range keys {
				i, _ := s.Select(keyOf(n))
				switch {
				case before[n] != 1 && i != before[n]:
					t.Fatalf("key %d moved from healthy %d to %d", n, before[n], i)
				case before[n] == 1 && i == 1:
					t.Fatalf("key %d stayed on the down backend", n)
				case before[n] == 1 && p == "ketama":
					next := ring.DistinctString(keyOf(n), make([]int, 2))
					if next[0] != 1 || i != next[1] {
						t.Fatalf("key %d went to %d, ring walk says %v", n, i, next)
					}
				}
				if before[n] == 1 {
					moved++
				}
			}
			if moved == 0 {
				t.Fatal("no key belonged to backend 1; test proves nothing")
			}
			bs[1].State.SetHealthy(true)
			for n := range keys {
				if i, _ := s.Select(keyOf(n)); i != before[n] {
					t.Fatalf("key %d: %d after recovery, %d before", n, i, before[n])
				}
			}
		})
	}
}

func TestFNVStable(t *testing.T) {
	t.Parallel()
	a := mustNew(t, "fnv", mkBackends(1, 2, 7))
	b := mustNew(t, "fnv", mkBackends(1, 2, 7))
	for n := range 1000 {
		i, _ := a.Select(keyOf(n))
		j, _ := b.Select(keyOf(n))
		k, _ := a.Select(keyOf(n))
		if i != j || i != k {
			t.Fatalf("key %d: %d, %d, %d", n, i, j, k)
		}
	}
	// Pinned values guard the mapping against accidental change (a config
	// reload must not reshuffle sticky keys), and fnvWant recomputes them
	// independently of the sampler.
	golden := []struct {
		key  string
		want int
	}{{"/object/0", 2}, {"/", 2}, {"/index.html", 2}, {"user:42", 2}, {"a", 0}}
	for _, g := range golden {
		if i, _ := a.Select(g.key); i != g.want || fnvWant(g.key, []int{1, 2, 7}) != g.want {
			t.Errorf("Select(%q) = %d, fnvWant = %d; want %d", g.key, i, fnvWant(g.key, []int{1, 2, 7}), g.want)
		}
	}
}

// fnvWant maps a key the slow, obvious way: scale the mixed hash to the
// total weight with 128-bit math in two 32-bit halves, then walk the
// weights.
func fnvWant(key string, weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	h := mix64(fnv1a(key))
	hi, lo := h>>32, h&0xffffffff
	r := (hi*uint64(total) + (lo*uint64(total))>>32) >> 32
	for i, w := range weights {
		if r < uint64(w) {
			return i
		}
		r -= uint64(w)
	}
	return -1
}

// TestKetamaAddBackend: adding a tenth backend moves about a tenth of the
// keys, all to the new backend.
func TestKetamaAddBackend(t *testing.T) {
	t.Parallel()
	nine := mkBackends(1, 1, 1, 1, 1, 1, 1, 1, 1)
	ten := append(append([]Backend(nil), nine...), Backend{Addr: "10.0.0.9:80", Weight: 1, State: NewState()})
	before, after := mustNew(t, "ketama", nine), mustNew(t, "ketama", ten)
	rng := rand.New(rand.NewPCG(7, 9))
	const keys = 10000
	moved := 0
	for range keys {
		k := "/" + strconv.FormatUint(rng.Uint64(), 36)
		a, _ := before.Select(k)
		b, _ := after.Select(k)
		if a != b {
			moved++
			if b != 9 {
				t.Fatalf("key %s moved %d -> %d, not to the new backend", k, a, b)
			}
		}
	}
	frac := float64(moved) / keys
	t.Logf("adding a 10th backend moved %d of %d keys (%.4f, ideal 0.1)", moved, keys, frac)
	if frac < 0.05 || frac > 0.20 {
		t.Errorf("moved fraction %.4f outside 0.05..0.20", frac)
	}
}

// TestKetamaManyBackendsDown covers groups larger than MaxTried, where the
// walk cannot count the backends it met.
func TestKetamaManyBackendsDown(t *testing.T) {
	t.Parallel()
	weights := make([]int, MaxTried+44)
	for i := range weights {
		weights[i] = 1
	}
	bs := mkBackends(weights...)
	s := mustNew(t, "ketama", bs)
	for i := range bs {
		bs[i].State.SetHealthy(false)
	}
	if i, ok := s.Select("k"); ok {
		t.Fatalf("Select = %d, true with all down", i)
	}
	bs[280].State.SetHealthy(true)
	if i, ok := s.Select("k"); !ok || i != 280 {
		t.Fatalf("Select = %d, %v; want 280", i, ok)
	}
}
