package estimator

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"testing"

	"github.com/pingora-go/pingora-go/internal/zipf"
)

func TestNewSizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		depth, width       int
		wantDepth, wantWid int
	}{
		{1, 1, 1, 1},
		{4, 1000, 4, 1024},
		{4, 1024, 4, 1024},
		{3, 1025, 3, 2048},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%dx%d", tc.depth, tc.width), func(t *testing.T) {
			t.Parallel()
			e := New(tc.depth, tc.width)
			if e.Depth() != tc.wantDepth || e.Width() != tc.wantWid {
				t.Errorf("New(%d, %d): depth %d width %d, want %d %d", tc.depth, tc.width, e.Depth(), e.Width(), tc.wantDepth, tc.wantWid)
			}
			for i := 0; i < 100; i++ {
				if got := e.Incr("k"+strconv.Itoa(i), 1); got < 1 {
					t.Fatalf("Incr returned %d < true count 1", got)
				}
			}
		})
	}
}

func TestNewPanics(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ d, w int }{{0, 8}, {4, 0}, {-1, 8}, {17, 8}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%d, %d) did not panic", tc.d, tc.w)
				}
			}()
			New(tc.d, tc.w)
		}()
	}
}

// TestIncrGetDecr runs Pingora's estimator cases: in a sketch this wide a
// handful of keys never collide in every row, so the counts are exact.
func TestIncrGetDecr(t *testing.T) {
	t.Parallel()
	type op struct {
		kind string // incr, decr, get
		key  string
		n    int64
		want int64
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{"incr returns running count", []op{{"incr", "a", 1, 1}, {"incr", "b", 1, 1}, {"incr", "a", 2, 3}, {"incr", "b", 2, 3}}},
		{"decr", []op{{"incr", "a", 3, 3}, {"incr", "b", 3, 3}, {"decr", "a", 1, 0}, {"decr", "b", 1, 0}, {"get", "a", 0, 2}, {"get", "b", 0, 2}}},
		{"get of unseen key", []op{{"incr", "a", 5, 5}, {"get", "zzz", 0, 0}}},
		{"negative increment", []op{{"incr", "a", 5, 5}, {"incr", "a", -7, -2}}},
		{"empty key", []op{{"incr", "", 4, 4}, {"get", "", 0, 4}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := New(4, 1<<16)
			for i, o := range tc.ops {
				var got int64
				switch o.kind {
				case "incr":
					got = e.Incr(o.key, o.n)
				case "decr":
					e.Decr(o.key, o.n)
					continue
				case "get":
					got = e.Get(o.key)
				}
				if got != o.want {
					t.Errorf("op %d %s(%q, %d) = %d, want %d", i, o.kind, o.key, o.n, got, o.want)
				}
			}
		})
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	e := New(4, 64)
	for i := range 1000 {
		e.Incr(strconv.Itoa(i), 3)
	}
	e.Reset()
	for i := range 1000 {
		if got := e.Get(strconv.Itoa(i)); got != 0 {
			t.Fatalf("Get after Reset = %d", got)
		}
	}
}

// TestErrorBoundZipf feeds 400,000 zipf (s = 1.0 and 1.2) events over
// 50,000 keys into sketches of several sizes and checks the package doc's
// bound: no key is ever underestimated, and the share of keys whose
// estimate exceeds the truth by more than ε·N is at most δ.
func TestErrorBoundZipf(t *testing.T) {
	t.Parallel()
	const keys, events = 50_000, 400_000
	names := make([]string, keys)
	for i := range names {
		names[i] = "client-" + strconv.Itoa(i*7919)
	}
	tests := []struct {
		s            float64
		depth, width int
	}{
		{1.0, 3, 1024}, // the Rate default
		{1.2, 3, 1024},
		{1.0, 4, 1024}, // Pingora's Rate
		{1.0, 2, 256},
		{1.0, 4, 8192}, // the Inflight default
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("s=%.1f/%dx%d", tc.s, tc.depth, tc.width), func(t *testing.T) {
			t.Parallel()
			z, err := zipf.New(keys, tc.s, 1)
			if err != nil {
				t.Fatal(err)
			}
			e := New(tc.depth, tc.width)
			truth := make([]int64, keys)
			for range events {
				k := z.Next()
				truth[k]++
				e.Incr(names[k], 1)
			}
			limit := e.Epsilon() * events
			over, seen := 0, 0
			worst := 0.0
			for k, c := range truth {
				if c == 0 {
					continue
				}
				seen++
				got := e.Get(names[k])
				if got < c {
					t.Fatalf("key %d: estimate %d below true count %d", k, got, c)
				}
				worst = math.Max(worst, float64(got-c))
				if float64(got-c) > limit {
					over++
				}
			}
			share := float64(over) / float64(seen)
			t.Logf("%d keys seen; ε·N = %.0f; %d over it (%.3f%%, δ = %.2f%%); worst error %.0f; top key %d→%d",
				seen, limit, over, 100*share, 100*e.Delta(), worst, truth[0], e.Get(names[0]))
			if share > e.Delta() {
				t.Errorf("%.3f%% of keys exceed ε·N, want at most δ = %.3f%%", 100*share, 100*e.Delta())
			}
		})
	}
}

// TestConcurrentIncr checks that concurrent increments are never lost.
func TestConcurrentIncr(t *testing.T) {
	t.Parallel()
	e := New(4, 1<<12)
	const workers, each = 8, 5000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			own := "own-" + strconv.Itoa(w)
			for range each {
				e.Incr("shared", 1)
				e.Incr(own, 1)
			}
		})
	}
	wg.Wait()
	if got := e.Get("shared"); got < workers*each {
		t.Errorf("shared = %d, want >= %d", got, workers*each)
	}
	for w := range workers {
		if got := e.Get("own-" + strconv.Itoa(w)); got < each {
			t.Errorf("own-%d = %d, want >= %d", w, got, each)
		}
	}
}
