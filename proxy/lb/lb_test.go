package lb

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// detRand is a deterministic Options.Rand, safe for concurrent use.
func detRand(seed uint64) func() uint64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Uint64()
	}
}

func mkBackends(weights ...int) []Backend {
	bs := make([]Backend, len(weights))
	for i, w := range weights {
		bs[i] = Backend{Addr: fmt.Sprintf("10.0.%d.%d:80", i/256, i%256), Weight: w, State: NewState()}
	}
	return bs
}

func mustNew(t testing.TB, policy string, bs []Backend) Selector {
	t.Helper()
	s, err := New(policy, bs, Options{Rand: detRand(42)})
	if err != nil {
		t.Fatalf("New(%q): %v", policy, err)
	}
	return s
}

// keyOf gives pick n its own key, so keyed policies see many keys.
func keyOf(n int) string { return "/object/" + strconv.Itoa(n) }

func TestNewErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		policy   string
		backends []Backend
		want     error
		wantText string
	}{
		{"unknown policy", "x", mkBackends(1), ErrUnknownPolicy,
			`lb: unknown policy "x" (want one of round_robin, random, least_conn, p2c, ketama, fnv)`},
		{"no backends", "random", nil, ErrNoBackends, "lb: no backends"},
		{"negative weight", "ketama", mkBackends(1, -1), ErrWeight,
			"lb: weight out of range: backend 1 (10.0.0.1:80) has -1 (want 0..10000)"},
		{"huge weight", "fnv", mkBackends(MaxWeight + 1), ErrWeight, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(tc.policy, tc.backends, Options{})
			if s != nil || !errors.Is(err, tc.want) {
				t.Fatalf("New = %v, %v; want nil, %v", s, err, tc.want)
			}
			if tc.wantText != "" && err.Error() != tc.wantText {
				t.Errorf("error text\n got %s\nwant %s", err, tc.wantText)
			}
		})
	}
}

func TestPoliciesAndDefaults(t *testing.T) {
	t.Parallel()
	if got := strings.Join(Policies(), ","); got != "round_robin,random,least_conn,p2c,ketama,fnv" {
		t.Errorf("Policies() = %s", got)
	}
	// Weight 0 means 1, nil State gets a private healthy one, and the
	// default Rand works.
	for _, p := range Policies() {
		s, err := New(p, []Backend{{Addr: "a:1"}, {Addr: "b:1"}}, Options{})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for n := range 100 {
			if i, ok := s.Select(keyOf(n)); !ok || i < 0 || i > 1 {
				t.Fatalf("%s: Select = %d, %v", p, i, ok)
			}
		}
	}
	var st State
	if !st.Healthy() || !NewState().Healthy() {
		t.Error("zero State and NewState must start healthy")
	}
	if sz := unsafe.Sizeof(st); sz != 64 {
		t.Errorf("State is %d bytes, want one 64-byte cache line", sz)
	}
}

// TestDistribution checks that 10,000 picks over weights 1,2,7 follow the
// weights: exactly for round_robin (1,000 whole cycles), within 3
// percentage points for the random and hashed policies. least_conn and p2c
// see no load here (InFlight stays 0), so they fall back to their
// weighted tie-break.
func TestDistribution(t *testing.T) {
	t.Parallel()
	weights := []int{1, 2, 7}
	const picks = 10000
	tests := []struct {
		policy string
		tol    float64 // allowed deviation of each share, in [0,1]
	}{
		{"round_robin", 0},
		{"random", 0.03},
		{"least_conn", 0.03},
		{"p2c", 0.03},
		{"ketama", 0.03},
		{"fnv", 0.03},
	}
	for _, tc := range tests {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			s := mustNew(t, tc.policy, mkBackends(weights...))
			var counts [3]int
			for n := range picks {
				i, ok := s.Select(keyOf(n))
				if !ok {
					t.Fatal("Select failed on a healthy group")
				}
				counts[i]++
			}
			for i, w := range weights {
				got, want := float64(counts[i])/picks, float64(w)/10
				if d := got - want; d > tc.tol || d < -tc.tol {
					t.Errorf("backend %d: share %.4f, want %.2f±%.2f (counts %v)", i, got, want, tc.tol, counts)
				}
			}
			t.Logf("counts %v", counts)
		})
	}
}

func TestRoundRobinSequence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		weights []int
		want    string
	}{
		{[]int{5, 1, 1}, "aabacaa" + "aabacaa"}, // nginx's documented order
		{[]int{1, 1, 1}, "abcabc"},
		{[]int{2, 1}, "abaaba"},
		{[]int{3}, "aaa"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			t.Parallel()
			s := mustNew(t, "round_robin", mkBackends(tc.weights...))
			var b strings.Builder
			for range len(tc.want) {
				i, _ := s.Select("")
				b.WriteByte(byte('a' + i))
			}
			if b.String() != tc.want {
				t.Errorf("sequence %s, want %s", b.String(), tc.want)
			}
		})
	}
}

// TestLoadSpreadsByWeight lets every pick keep its request in flight: the
// load-aware policies must then fill the backends in proportion to weight.
func TestLoadSpreadsByWeight(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"least_conn", "p2c"} {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			bs := mkBackends(1, 2, 7)
			s := mustNew(t, p, bs)
			for range 1000 {
				i, _ := s.Select("")
				bs[i].State.InFlight.Add(1)
			}
			got := [3]int64{}
			for i := range bs {
				got[i] = bs[i].State.InFlight.Load()
			}
			// least_conn is exact up to the last partial round; p2c
			// converges to the same balance within a few requests.
			for i, w := range []int64{100, 200, 700} {
				if d := got[i] - w; d > 5 || d < -5 {
					t.Errorf("in flight %v, want about [100 200 700]", got)
					break
				}
			}
		})
	}
}

func TestTried(t *testing.T) {
	t.Parallel()
	tests := []struct {
		i      int
		stored bool
	}{{0, true}, {63, true}, {64, true}, {255, true}, {256, false}, {-1, false}, {1 << 20, false}}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.i), func(t *testing.T) {
			t.Parallel()
			var tr Tried
			if tr.Has(tc.i) {
				t.Fatal("empty Tried has an index")
			}
			if got := tr.Add(tc.i); got != tc.stored || tr.Has(tc.i) != tc.stored {
				t.Errorf("Add(%d) = %v, Has = %v; want %v", tc.i, got, tr.Has(tc.i), tc.stored)
			}
			if tc.stored && (tr.Has(tc.i+1) || tr.Has(tc.i-1)) {
				t.Error("Add set a neighbouring bit")
			}
		})
	}
}

func TestFNV1a(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  string
		want uint64
	}{
		// Published FNV-1a 64 test vectors.
		{"", 0xcbf29ce484222325},
		{"a", 0xaf63dc4c8601ec8c},
		{"foobar", 0x85944171f73967e8},
	}
	for _, tc := range tests {
		if got := fnv1a(tc.key); got != tc.want {
			t.Errorf("fnv1a(%q) = %#x, want %#x", tc.key, got, tc.want)
		}
	}
	for n := range 1000 {
		h := fnv.New64a()
		h.Write([]byte(keyOf(n)))
		if got, want := fnv1a(keyOf(n)), h.Sum64(); got != want {
			t.Fatalf("fnv1a(%q) = %#x, hash/fnv says %#x", keyOf(n), got, want)
		}
	}
}
