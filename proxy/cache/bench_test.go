package cache

import (
	"context"
	"io"
	"strconv"
	"testing"
)

// BenchmarkMemoryHit measures a hit in the memory store: Lookup, a reader,
// and reading a 100-byte body, the store's share of a cache hit.
func BenchmarkMemoryHit(b *testing.B) {
	m, _ := NewMemory(MemoryConfig{})
	for i := range 1000 {
		f, _, _ := m.Lock(context.Background(), "key"+strconv.Itoa(i), 0)
		f.Start(testMeta("100"), 0)
		f.Write(make([]byte, 100))
		f.Commit()
	}
	buf := make([]byte, 32<<10)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		o, _ := m.Lookup(ctx, "key"+strconv.Itoa(i%1000))
		r, _ := o.NewReader(ctx, 0)
		for {
			if _, err := r.Read(buf); err == io.EOF {
				break
			}
		}
		r.Close()
		i++
	}
}
