package wire

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
	"time"
)

// FuzzReadFrame feeds arbitrary bytes to the frame decoder: it must never
// panic, never allocate beyond the limit, and what it accepts must re-encode
// to the same bytes. Seeds live in testdata/fuzz/FuzzReadFrame.
func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, frameRequest, 7, []byte{4}, []byte("echo"), []byte{0x80}))
	f.Add(appendFrame(nil, frameError, 1, []byte{1}, []byte("nope")))
	f.Add(appendCall(nil, 9, callHeader{flags: flagStream, timeout: 250 * time.Millisecond, ring: 42}, "cache.get", []byte{0xa1, 'k'}))
	f.Add(appendFrame(nil, frameData, 9, []byte("chunk of a body")))
	f.Add(appendFrame(nil, frameEnd, 9))
	f.Add(appendFrame(nil, frameError, 3, remoteFailure{code: CodeNotOwner, msg: "moved", callerRing: 4, serverRing: 5}.payload()))
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
		switch fr.typ {
		case frameRequest, frameCall:
			checkRequest(t, fr)
		case frameError:
			decodeRemoteError("a", "m", fr.payload)
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

// checkRequest asserts what parseRequest accepts is well formed and, for a
// call frame, re-encodes to the same bytes.
func checkRequest(t *testing.T, fr frame) {
	r, err := parseRequest(fr)
	if err != nil {
		return
	}
	if r.method == "" || len(r.method) > maxMethodLen || r.timeout < 0 || r.timeout > maxTimeout {
		t.Fatalf("bad request accepted: %+v", r)
	}
	if fr.typ == frameCall {
		again := appendCall(nil, fr.id, r.callHeader, r.method, r.body)
		if !bytes.Equal(again, appendFrame(nil, fr.typ, fr.id, fr.payload)) {
			t.Fatalf("call re-encoding differs")
		}
	}
}

func TestRemoteErrorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, f := range []remoteFailure{
		{code: CodeHandler, msg: "boom"},
		{code: CodeUnknownMethod, msg: "no unary handler"},
		{code: CodeNotOwner, msg: "moved", callerRing: 7, serverRing: 9},
		{code: CodeOverloaded, msg: "busy"},
		{code: CodeDeadline, msg: ""},
	} {
		t.Run(f.code.String(), func(t *testing.T) {
			e := decodeRemoteError("a", "m", f.payload())
			if e.Code != f.code || e.Message != f.msg || e.CallerRing != f.callerRing || e.ServerRing != f.serverRing {
				t.Fatalf("decoded %+v from %+v", e, f)
			}
		})
	}
}
