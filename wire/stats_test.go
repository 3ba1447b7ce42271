package wire_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/wire"
)

func method(ms []wire.MethodStats, name string) wire.MethodStats {
	for _, m := range ms {
		if m.Method == name {
			return m
		}
	}
	return wire.MethodStats{}
}

// TestStats: calls, errors by class, bytes, in-flight and the latency
// histogram per method, on both sides.
func TestStats(t *testing.T) {
	_, srv, cl, _ := pair(t, wire.ServerConfig{}, wire.ClientConfig{})
	srv.HandleStream("body", func(_ context.Context, _ []byte, w io.Writer) error {
		_, err := w.Write(make([]byte, 5000))
		return err
	})
	srv.Handle("raw", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })
	ctx := ctxT(t, 5*time.Second)
	for range 2 {
		if _, err := cl.CallRaw(ctx, "srv:1", "raw", []byte{0xa2, 'h', 'i'}); err != nil {
			t.Fatal(err)
		}
	}
	cl.CallRaw(ctx, "srv:1", "fail", nil)
	cl.CallRaw(ctx, "srv:1", "nope", nil)
	r, err := cl.CallStream(ctx, "srv:1", "body", nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r)
	r.Close()
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	cl.CallRaw(cctx, "srv:1", "raw", nil)

	// The server counts a call after its answer is on its way.
	waitFor(t, 5*time.Second, "the server to count every call", func() bool {
		for _, m := range srv.Stats().Methods {
			if m.InFlight != 0 {
				return false
			}
		}
		return true
	})
	ss, cs := srv.Stats(), cl.Stats()
	cases := []struct {
		name      string
		got, want wire.MethodStats
	}{
		{"server raw", method(ss.Methods, "raw"), wire.MethodStats{Calls: 2, BytesReceived: 6, BytesSent: 6}},
		{"server fail", method(ss.Methods, "fail"), wire.MethodStats{Calls: 1, Errors: map[string]uint64{"handler": 1}}},
		{"server body", method(ss.Methods, "body"), wire.MethodStats{Calls: 1, BytesReceived: 1, BytesSent: 5000}},
		{"client raw", method(cs.Methods, "raw"), wire.MethodStats{Calls: 3, Errors: map[string]uint64{"canceled": 1}, BytesSent: 6, BytesReceived: 6}},
		{"client nope", method(cs.Methods, "nope"), wire.MethodStats{Calls: 1, Errors: map[string]uint64{"unknown_method": 1}}},
		{"client body", method(cs.Methods, "body"), wire.MethodStats{Calls: 1, BytesSent: 1, BytesReceived: 5000}},
	}
	for _, tc := range cases {
		checkMethodStats(t, tc.name, tc.got, tc.want)
	}
	if h := method(ss.Methods, "raw").Latency; h.Count != 2 || h.Sum <= 0 {
		t.Errorf("server raw latency = %+v, want 2 observations", h)
	}
	if ss.UnknownMethod != 1 || method(ss.Methods, "nope").Method != "" {
		t.Errorf("unknown method: counter %d, and it must not get its own stats", ss.UnknownMethod)
	}
	if cs.Dials != 2 || cs.DialErrors != 0 {
		t.Errorf("client dials = %d (errors %d), want 2: the unary and the stream connection", cs.Dials, cs.DialErrors)
	}
}

// checkMethodStats compares the counters of want (errors by class too);
// the histogram only for its shape.
func checkMethodStats(t *testing.T, name string, g, w wire.MethodStats) {
	t.Helper()
	if g.Calls != w.Calls || g.BytesSent != w.BytesSent || g.BytesReceived != w.BytesReceived || g.InFlight != 0 || len(g.Errors) != len(w.Errors) {
		t.Errorf("%s = %+v, want %+v", name, g, w)
	}
	for k, v := range w.Errors {
		if g.Errors[k] != v {
			t.Errorf("%s errors[%s] = %d, want %d", name, k, g.Errors[k], v)
		}
	}
	if h := g.Latency; len(h.Counts) != len(h.Bounds)+1 {
		t.Errorf("%s histogram has %d counts for %d bounds", name, len(h.Counts), len(h.Bounds))
	}
}
