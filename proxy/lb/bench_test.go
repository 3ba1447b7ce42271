package lb

import (
	"fmt"
	"strconv"
	"testing"
)

// benchBackends is a group of n backends with weights 1,2,3,1,2,3,… so
// the weighted code paths run, not the equal-weight shortcuts.
func benchBackends(n int) []Backend {
	w := make([]int, n)
	for i := range w {
		w[i] = 1 + i%3
	}
	return mkBackends(w...)
}

func benchKeys() []string {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "/assets/" + strconv.Itoa(i*7919) + "/app.js"
	}
	return keys
}

// BenchmarkSelect measures one healthy pick through the Selector
// interface with the default Options (math/rand/v2).
func BenchmarkSelect(b *testing.B) {
	keys := benchKeys()
	for _, p := range Policies() {
		for _, n := range []int{3, 100} {
			s, err := New(p, benchBackends(n), Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/%d", p, n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					s.Select(keys[i&1023])
					i++
				}
			})
		}
	}
}

// BenchmarkSelectParallel is BenchmarkSelect from GOMAXPROCS goroutines,
// which shows the cost of round_robin's mutex under contention.
func BenchmarkSelectParallel(b *testing.B) {
	keys := benchKeys()
	for _, p := range Policies() {
		for _, n := range []int{3, 100} {
			s, err := New(p, benchBackends(n), Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/%d", p, n), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						s.Select(keys[i&1023])
						i++
					}
				})
			})
		}
	}
}

// BenchmarkSelectExcluding measures a retry after the first pick failed.
func BenchmarkSelectExcluding(b *testing.B) {
	keys := benchKeys()
	for _, p := range Policies() {
		for _, n := range []int{3, 100} {
			s, err := New(p, benchBackends(n), Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/%d", p, n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					key := keys[i&1023]
					var tried Tried
					first, _ := s.Select(key)
					tried.Add(first)
					s.SelectExcluding(key, tried)
					i++
				}
			})
		}
	}
}
