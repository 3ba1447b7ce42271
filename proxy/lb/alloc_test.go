package lb

import "testing"

// TestNoAllocs asserts, through the Selector interface, that no selection
// method allocates: not on the fast path, not with a backend down (the
// retry and fallback paths), and not with everything down.
func TestNoAllocs(t *testing.T) {
	keys := benchKeys()
	for _, p := range Policies() {
		for _, n := range []int{3, 100} {
			bs := benchBackends(n)
			s := mustNew(t, p, bs)
			var tried Tried
			tried.Add(0)
			k := 0
			calls := func() {
				key := keys[k&1023]
				k++
				s.Select(key)
				s.SelectAny(key)
				s.SelectExcluding(key, tried)
			}
			states := []struct {
				name string
				down func(i int) bool
			}{
				{"healthy", func(int) bool { return false }},
				{"half down", func(i int) bool { return i%2 == 1 }},
				{"all down", func(int) bool { return true }},
			}
			for _, st := range states {
				for i := range bs {
					bs[i].State.SetHealthy(!st.down(i))
				}
				if a := testing.AllocsPerRun(500, calls); a != 0 {
					t.Errorf("%s/%d/%s: %v allocs per run, want 0", p, n, st.name, a)
				}
			}
		}
	}
}
