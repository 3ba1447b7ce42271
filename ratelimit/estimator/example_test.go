package estimator_test

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/ratelimit/estimator"
)

func Example() {
	var now atomic.Int64 // a fake clock in nanoseconds
	r, err := estimator.NewRate(estimator.RateConfig{
		Interval: time.Second,
		Now:      now.Load,
	})
	if err != nil {
		panic(err)
	}
	for range 40 {
		r.Observe("api-key-1", 1)
	}
	now.Add(int64(1250 * time.Millisecond)) // a quarter into the next window
	r.Observe("api-key-1", 10)
	fmt.Println("rate of the last full window:", r.Rate("api-key-1"), "/s")
	fmt.Println("sliding estimate:", r.Sliding("api-key-1"), "in the last second")
	// Output:
	// rate of the last full window: 40 /s
	// sliding estimate: 40 in the last second
}

func ExampleInflight() {
	in := estimator.NewInflight(0, 0)
	g1, n := in.Acquire("upstream-a", 1)
	fmt.Println("in flight:", n)
	g2, n := in.Acquire("upstream-a", 1)
	fmt.Println("in flight:", n)
	g1.Release()
	g2.Release()
	fmt.Println("in flight:", in.Get("upstream-a"))
	// Output:
	// in flight: 1
	// in flight: 2
	// in flight: 0
}

func ExampleNewForError() {
	e := estimator.NewForError(0.001, 0.01)
	fmt.Printf("width %d depth %d: ε = %.5f, δ = %.4f\n", e.Width(), e.Depth(), e.Epsilon(), e.Delta())
	// Output: width 4096 depth 5: ε = 0.00066, δ = 0.0067
}
