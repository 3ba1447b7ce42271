package lb

import (
	"sync"
	"testing"
)

// TestConcurrentSelect runs many pickers against one selector while other
// goroutines flip health and in-flight counts; run it with -race.
func TestConcurrentSelect(t *testing.T) {
	t.Parallel()
	for _, p := range Policies() {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			bs := mkBackends(1, 2, 7, 3)
			s, err := New(p, bs, Options{}) // the default, shared Rand
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Go(func() { churn(bs, stop) })
			var pickers sync.WaitGroup
			for g := range 8 {
				pickers.Go(func() {
					var tried Tried
					for n := range 500 {
						key := keyOf(g*1000 + n)
						if i, ok := s.Select(key); ok {
							bs[i].State.InFlight.Add(1)
							tried.Add(i)
							bs[i].State.InFlight.Add(-1)
						}
						if i, ok := s.SelectAny(key); !ok || i < 0 || i >= len(bs) {
							t.Errorf("SelectAny = %d, %v", i, ok)
							return
						}
						s.SelectExcluding(key, tried)
					}
				})
			}
			pickers.Wait()
			close(stop)
			wg.Wait()
		})
	}
}

// churn toggles backend health and nudges in-flight counts up and down
// until stop closes.
func churn(bs []Backend, stop <-chan struct{}) {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		b := bs[n%len(bs)].State
		b.SetHealthy(n%3 != 0)
		b.InFlight.Add(int64(n%5) - 2)
	}
}
