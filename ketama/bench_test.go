package ketama

import (
	"fmt"
	"strconv"
	"testing"
)

func benchRing(n int) *Continuum {
	b := make([]Bucket, n)
	for i := range b {
		b[i] = Bucket{Addr: fmt.Sprintf("10.0.%d.%d:443", i/256, i%256), Weight: 1}
	}
	return New(b)
}

func benchKeys() []string {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "/assets/" + strconv.Itoa(i*7919) + "/app.js"
	}
	return keys
}

var benchSizes = []int{3, 100}

func BenchmarkNode(b *testing.B) {
	keys := benchKeys()
	for _, n := range benchSizes {
		c := benchRing(n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c.NodeString(keys[i&1023])
				i++
			}
		})
	}
}

func BenchmarkWalk(b *testing.B) {
	keys := benchKeys()
	for _, n := range benchSizes {
		c := benchRing(n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				w := c.WalkString(keys[i&1023])
				for range 8 {
					w.Next()
				}
				i++
			}
		})
	}
}

func BenchmarkDistinct(b *testing.B) {
	keys := benchKeys()
	dst := make([]int, 3)
	for _, n := range benchSizes {
		c := benchRing(n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c.DistinctString(keys[i&1023], dst)
				i++
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchRing(n)
			}
		})
	}
}
