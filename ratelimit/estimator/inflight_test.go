package estimator

import (
	"sync"
	"testing"
)

func TestInflight(t *testing.T) {
	t.Parallel()
	type op struct {
		acquire string // key to acquire, or "" to release guard #release
		n       int64
		release int
		want    int64 // Acquire's estimate, or Get of checkKey after a release
	}
	tests := []struct {
		name     string
		checkKey string
		ops      []op
	}{
		{"pingora inflight_count", "a", []op{
			{acquire: "a", n: 1, want: 1},
			{acquire: "a", n: 2, want: 3},
			{release: 0, want: 2},
			{release: 1, want: 0},
			{acquire: "a", n: 1, want: 1},
		}},
		{"double release counts once", "a", []op{
			{acquire: "a", n: 5, want: 5},
			{release: 0, want: 0},
			{release: 0, want: 0},
		}},
		{"keys are independent", "b", []op{
			{acquire: "a", n: 3, want: 3},
			{acquire: "b", n: 1, want: 1},
			{release: 0, want: 1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := NewInflight(0, 0)
			var guards []Guard
			for i, o := range tc.ops {
				if o.acquire != "" {
					g, got := in.Acquire(o.acquire, o.n)
					guards = append(guards, g)
					if got != o.want {
						t.Errorf("op %d: Acquire(%q, %d) = %d, want %d", i, o.acquire, o.n, got, o.want)
					}
					if g.Get() != got {
						t.Errorf("op %d: Guard.Get = %d, want %d", i, g.Get(), got)
					}
					continue
				}
				guards[o.release].Release()
				if got := in.Get(tc.checkKey); got != o.want {
					t.Errorf("op %d: after release Get(%q) = %d, want %d", i, tc.checkKey, got, o.want)
				}
			}
		})
	}
}

func TestZeroGuard(t *testing.T) {
	t.Parallel()
	var g Guard
	g.Release() // must not panic
	if g.Get() != 0 {
		t.Error("zero Guard Get != 0")
	}
}

// TestInflightConcurrent acquires and releases from many goroutines; once
// all guards are released the count is back to zero.
func TestInflightConcurrent(t *testing.T) {
	t.Parallel()
	in := NewInflight(0, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				g, n := in.Acquire("upstream", 1)
				if n < 1 {
					t.Errorf("estimate %d while holding a guard", n)
				}
				g.Release()
			}
		})
	}
	wg.Wait()
	if got := in.Get("upstream"); got != 0 {
		t.Errorf("after all releases: %d, want 0", got)
	}
}
