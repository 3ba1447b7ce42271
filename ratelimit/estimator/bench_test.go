package estimator

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func benchKeys() []string {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "203.0.113." + strconv.Itoa(i%256) + "/api-key-" + strconv.Itoa(i*7919)
	}
	return keys
}

// BenchmarkIncr is Pingora's estimator benchmark (3 rows of 1024) and the
// Rate default (4 rows of 1024). Run with -cpu 1,2 to see it scale.
func BenchmarkIncr(b *testing.B) {
	keys := benchKeys()
	for _, size := range []struct {
		name string
		d, w int
	}{{"3x1024", 3, 1024}, {"4x1024", 4, 1024}} {
		e := New(size.d, size.w)
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					e.Incr(keys[i&1023], 1)
					i++
				}
			})
		})
	}
}

func BenchmarkGet(b *testing.B) {
	keys := benchKeys()
	e := New(4, 1024)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			e.Get(keys[i&1023])
			i++
		}
	})
}

// BenchmarkObserve measures Rate.Observe with a fake clock (the cost of the
// estimator and window check) and with the default monotonic clock.
func BenchmarkObserve(b *testing.B) {
	keys := benchKeys()
	var fake atomic.Int64
	clocks := []struct {
		name string
		now  Clock
	}{{"fakeclock", fake.Load}, {"monotonic", nil}}
	for _, c := range clocks {
		r, err := NewRate(RateConfig{Interval: time.Second, Now: c.now})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					r.Observe(keys[i&1023], 1)
					i++
				}
			})
		})
	}
}

// BenchmarkObserveAt is Observe for a caller that passes the time it
// already read.
func BenchmarkObserveAt(b *testing.B) {
	keys := benchKeys()
	r, err := NewRate(RateConfig{Now: func() int64 { return 0 }})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.ObserveAt(keys[i&1023], 1, 42)
			i++
		}
	})
}

func BenchmarkSliding(b *testing.B) {
	keys := benchKeys()
	var fake atomic.Int64
	r, err := NewRate(RateConfig{Now: fake.Load})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Sliding(keys[i&1023])
			i++
		}
	})
}

func BenchmarkInflight(b *testing.B) {
	keys := benchKeys()
	in := NewInflight(0, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			g, _ := in.Acquire(keys[i&1023], 1)
			g.Release()
			i++
		}
	})
}
