package wire

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
)

// FuzzReadFrame feeds arbitrary bytes to the frame decoder: it must never
// panic, never allocate beyond the limit, and what it accepts must re-encode
// to the same bytes. Seeds live in testdata/fuzz/FuzzReadFrame.
func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, frameRequest, 7, []byte{4}, []byte("echo"), []byte{0x80}))
	f.Add(appendFrame(nil, frameError, 1, []byte{1}, []byte("nope")))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := readFrame(bytes.NewReader(data), limit)
		if err != nil {
			return
		}
		if len(fr.payload) > limit {
			t.Fatalf("payload %d over limit", len(fr.payload))
		}
		again := appendFrame(nil, fr.typ, fr.id, fr.payload)
		if !bytes.Equal(again, data[:len(again)]) {
			t.Fatalf("re-encoding differs")
		}
		if fr.typ == frameRequest {
			if m, _, err := parseRequest(fr.payload); err == nil && (m == "" || len(m) > maxMethodLen) {
				t.Fatalf("bad method %q accepted", m)
			}
		}
	})
}

func TestReadFrameRefusesBeforeAllocating(t *testing.T) {
	r := bytes.NewReader([]byte{0x7f, 0xff, 0xff, 0xff})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		r.Seek(0, 0)
		if _, err := readFrame(r, 1024); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("err = %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	// Only the error values, never the 2 GiB the prefix asks for.
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
		t.Fatalf("allocated %d bytes refusing 10 huge frames", d)
	}
}
