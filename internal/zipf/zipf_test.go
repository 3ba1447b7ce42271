package zipf

import (
	"fmt"
	"math"
	"testing"
)

func Example() {
	z, err := New(10_000, 1.0, 42)
	if err != nil {
		panic(err)
	}
	fmt.Printf("P(rank 0) = %.4f\n", z.P(0))
	// Output: P(rank 0) = 0.1022
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n int
		s float64
	}{{0, 1}, {10, 0}, {10, -1}, {10, math.NaN()}, {10, math.Inf(1)}} {
		if _, err := New(tc.n, tc.s, 1); err == nil {
			t.Errorf("New(%d, %g) = nil error", tc.n, tc.s)
		}
	}
}

// TestFrequencies draws 1e6 ranks and compares the empirical frequency of
// the top ranks with the exact probability, for exponents below, at and
// above 1.
func TestFrequencies(t *testing.T) {
	t.Parallel()
	for _, s := range []float64{0.9, 1.0, 1.2} {
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			t.Parallel()
			z, err := New(10_000, s, 7)
			if err != nil {
				t.Fatal(err)
			}
			const m = 1_000_000
			counts := make([]int, 10_000)
			for range m {
				counts[z.Next()]++
			}
			for _, k := range []int{0, 1, 9, 99} {
				p := z.P(k)
				want := math.Pow(float64(k+1), -s) * z.P(0)
				if math.Abs(p-want) > 1e-12 {
					t.Errorf("P(%d) = %g, want %g (power law)", k, p, want)
				}
				got := float64(counts[k]) / m
				sd := math.Sqrt(p * (1 - p) / m)
				if math.Abs(got-p) > 5*sd {
					t.Errorf("rank %d: frequency %.5f, want %.5f ± %.5f", k, got, p, 5*sd)
				}
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	a, _ := New(1000, 0.9, 3)
	b, _ := New(1000, 0.9, 3)
	ta, tb := a.Trace(1000), b.Trace(1000)
	for i := range ta {
		if ta[i] != tb[i] {
			t.Fatalf("draw %d differs: %d vs %d", i, ta[i], tb[i])
		}
	}
}
