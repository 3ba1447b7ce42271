package wire

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
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
	f.Add(appendCall(nil, 11, callHeader{flags: flagTrace, ring: 1, trace: TraceContext{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", State: "k=v"}}, "cache.get", []byte{0xa1, 'k'}))
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

// TestCallTraceField: a call's trace context survives encoding; a
// tracestate too long for its length byte is dropped, a traceparent too
// long is not sent at all; a trace field cut short is malformed.
func TestCallTraceField(t *testing.T) {
	long := strings.Repeat("x", maxTraceField+1)
	for _, tc := range []struct {
		name    string
		in, out TraceContext
	}{
		{"both", TraceContext{Parent: "tp", State: "k=v"}, TraceContext{Parent: "tp", State: "k=v"}},
		{"no state", TraceContext{Parent: "tp"}, TraceContext{Parent: "tp"}},
		{"state too long", TraceContext{Parent: "tp", State: long}, TraceContext{Parent: "tp"}},
		{"parent too long", TraceContext{Parent: long, State: "k=v"}, TraceContext{}},
		{"none", TraceContext{State: "k=v"}, TraceContext{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := callHeader{ring: 3, timeout: time.Second}
			h.withTrace(tc.in)
			b := appendCall(nil, 5, h, "m", []byte("body"))
			if len(b) != callFrameLen(&h, "m", 4) {
				t.Fatalf("frame of %d bytes, callFrameLen says %d", len(b), callFrameLen(&h, "m", 4))
			}
			fr, err := readFrame(bytes.NewReader(b), 1<<16)
			if err != nil {
				t.Fatal(err)
			}
			r, err := parseRequest(fr)
			if err != nil || r.trace != tc.out || r.method != "m" || string(r.body) != "body" || r.ring != 3 {
				t.Fatalf("parsed %+v, %v; want trace %+v", r, err, tc.out)
			}
		})
	}
	h := callHeader{}
	h.withTrace(TraceContext{Parent: "tp", State: "st"})
	b := appendCall(nil, 5, h, "m", nil)
	payload := b[4+headerLen:]
	for _, cut := range []int{callHeaderLen + 1, callHeaderLen + 3, callHeaderLen + 4} {
		if _, err := parseRequest(frame{typ: frameCall, payload: payload[:cut]}); !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut at %d: %v, want ErrMalformed", cut, err)
		}
	}
}
