package tinyufo

import (
	"runtime"
	"sync"
	"testing"

	"github.com/pingora-go/pingora-go/internal/zipf"
)

// lockedLRU is the lru baseline behind one mutex, as a Go service would
// share it between goroutines.
type lockedLRU struct {
	mu sync.Mutex
	l  *lru
}

func (m *lockedLRU) getOrPut(k int32) {
	m.mu.Lock()
	if !m.l.get(k) {
		m.l.put(k)
	}
	m.mu.Unlock()
}

// BenchmarkGet is a cache hit (every key cached). Run with -cpu 1,2.
func BenchmarkGet(b *testing.B) {
	names := keyNames(hitItems)
	c, _ := New[[]byte](Config{Capacity: 2 * hitItems})
	for _, k := range names {
		c.Put(k, nil, 1)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Get(names[i%hitItems])
			i++
		}
	})
}

// BenchmarkPut inserts keys that are never cached yet, so every Put runs
// the admission check and an eviction.
func BenchmarkPut(b *testing.B) {
	names := keyNames(1 << 16)
	c, _ := New[[]byte](Config{Capacity: 1000})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Put(names[i&(1<<16-1)], nil, 1)
			i++
		}
	})
}

// BenchmarkZipf is the hit-ratio workload as throughput: zipf s = 1.0 over
// 10,000 keys, a cache of 10 % of them (about 76 % hits), Get then Put on
// a miss; LRU is the same under one mutex.
func BenchmarkZipf(b *testing.B) {
	names := keyNames(hitItems)
	z, err := zipf.New(hitItems, 1.0, 9)
	if err != nil {
		b.Fatal(err)
	}
	trace := z.Trace(1 << 20)
	const mask = 1<<20 - 1
	b.Run("tinyufo", func(b *testing.B) {
		c, _ := New[[]byte](Config{Capacity: hitItems / 10, EstimatedEntries: hitItems / 10})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				k := names[trace[i&mask]]
				if _, ok := c.Get(k); !ok {
					c.Put(k, nil, 1)
				}
				i++
			}
		})
	})
	b.Run("lru", func(b *testing.B) {
		l := &lockedLRU{l: newLRU(hitItems / 10)}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				l.getOrPut(trace[i&mask])
				i++
			}
		})
	})
}

// BenchmarkMemoryPerEntry reports the heap bytes one entry costs (entry,
// index slot, sketch share; not the key string, which the caller owns)
// for a pointer value, the shape the HTTP cache stores.
func BenchmarkMemoryPerEntry(b *testing.B) {
	const n = 100_000
	names := keyNames(n)
	val := new(int)
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		c, _ := New[*int](Config{Capacity: n, EstimatedEntries: n})
		for _, k := range names {
			c.Put(k, val, 1)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		if c.Len() != n {
			b.Fatalf("Len %d, want %d", c.Len(), n)
		}
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "B/entry")
		runtime.KeepAlive(c)
	}
}

func BenchmarkRemovePrefix(b *testing.B) {
	names := keyNames(hitItems)
	c, _ := New[[]byte](Config{Capacity: 2 * hitItems})
	for _, k := range names {
		c.Put(k, nil, 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.RemovePrefix("/nothing/") // a full scan that matches nothing
	}
}
