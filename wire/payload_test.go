package wire

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
)

// TestReadPayloadGrowsWithBytes: a payload declared at 16 MiB of which
// 10 bytes come costs about the first step, not 16 MiB; one that comes
// whole is read whole.
func TestReadPayloadGrowsWithBytes(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 20 {
		if _, err := readPayload(bytes.NewReader(make([]byte, 10)), 16<<20); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("short payload: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Fatalf("20 short 16 MiB payloads allocated %d MiB", grew>>20)
	}
	for _, n := range []int{0, 1, eagerPayload, eagerPayload + 1, 3*eagerPayload + 7, 1 << 20} {
		src := bytes.Repeat([]byte{'a', 'b', 'c'}, n/3+1)[:n]
		got, err := readPayload(io.MultiReader(bytes.NewReader(src[:n/2]), bytes.NewReader(src[n/2:])), n)
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("n=%d: %d bytes, %v", n, len(got), err)
		}
	}
}
