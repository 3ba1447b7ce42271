package lb

import "testing"

// TestUnhealthySkipped marks one backend down: no policy may pick it, and
// every policy picks it again once it is back.
func TestUnhealthySkipped(t *testing.T) {
	t.Parallel()
	for _, p := range Policies() {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			bs := mkBackends(1, 2, 7, 3)
			s := mustNew(t, p, bs)
			bs[2].State.SetHealthy(false) // the heaviest
			for n := range 2000 {
				i, ok := s.Select(keyOf(n))
				if !ok || i == 2 {
					t.Fatalf("Select = %d, %v while backend 2 is down", i, ok)
				}
			}
			bs[2].State.SetHealthy(true)
			back := 0
			for n := range 2000 {
				if i, _ := s.Select(keyOf(n)); i == 2 {
					back++
				}
			}
			if back == 0 {
				t.Error("backend 2 never picked after it recovered")
			}
		})
	}
}

func TestAllUnhealthy(t *testing.T) {
	t.Parallel()
	for _, p := range Policies() {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			bs := mkBackends(1, 2, 7)
			s := mustNew(t, p, bs)
			for i := range bs {
				bs[i].State.SetHealthy(false)
			}
			for n := range 50 {
				if i, ok := s.Select(keyOf(n)); ok {
					t.Fatalf("Select = %d, true with every backend down", i)
				}
				if i, ok := s.SelectAny(keyOf(n)); !ok || i < 0 || i > 2 {
					t.Fatalf("SelectAny = %d, %v; want a backend", i, ok)
				}
			}
		})
	}
}

// TestSelectExcluding walks one request through retries: each retry must
// reach a backend not yet tried, skipping the down one, until none is left.
func TestSelectExcluding(t *testing.T) {
	t.Parallel()
	for _, p := range Policies() {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			bs := mkBackends(1, 2, 7, 3, 1)
			s := mustNew(t, p, bs)
			bs[3].State.SetHealthy(false)
			for n := range 200 {
				key := keyOf(n)
				var tried Tried
				got := 0
				for {
					i, ok := s.SelectExcluding(key, tried)
					if !ok {
						break
					}
					if tried.Has(i) || i == 3 {
						t.Fatalf("retry %d picked %d (tried or down)", got, i)
					}
					tried.Add(i)
					got++
				}
				if got != 4 {
					t.Fatalf("key %s: reached %d backends, want the 4 healthy ones", key, got)
				}
			}
		})
	}
}

// TestLoadAware gives backend 0 a pile of requests in flight: least_conn
// and p2c must send nothing there while others are idle.
func TestLoadAware(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy  string
		weights []int
	}{
		{"least_conn", []int{1, 1, 1}},
		{"least_conn", []int{7, 2, 1}},
		{"p2c", []int{1, 1, 1}},
		{"p2c", []int{7, 2, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			bs := mkBackends(tc.weights...)
			s := mustNew(t, tc.policy, bs)
			bs[0].State.InFlight.Store(100)
			for range 2000 {
				if i, _ := s.Select(""); i == 0 {
					t.Fatal("picked the backend with 100 requests in flight")
				}
			}
		})
	}
}
