package node

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/node/config"
)

// TestTraceparent: the W3C traceparent fields the node's own sampling
// decision reads, and those it refuses (then the request starts a trace).
func TestTraceparent(t *testing.T) {
	t.Parallel()
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	cases := []struct {
		name    string
		vs      []string
		sampled bool
		ok      bool
	}{
		{"sampled", []string{"00-" + tid + "-00f067aa0ba902b7-01"}, true, true},
		{"not sampled", []string{"00-" + tid + "-00f067aa0ba902b7-00"}, false, true},
		{"other flags, sampled", []string{"00-" + tid + "-00f067aa0ba902b7-03"}, true, true},
		{"later version, longer", []string{"01-" + tid + "-00f067aa0ba902b7-00-extra"}, false, true},
		{"absent", nil, false, false},
		{"twice", []string{"00-" + tid + "-00f067aa0ba902b7-01", "00-" + tid + "-00f067aa0ba902b7-01"}, false, false},
		{"version ff", []string{"ff-" + tid + "-00f067aa0ba902b7-01"}, false, false},
		{"version 00, too long", []string{"00-" + tid + "-00f067aa0ba902b7-01-x"}, false, false},
		{"upper case", []string{"00-" + strings.ToUpper(tid) + "-00f067aa0ba902b7-01"}, false, false},
		{"zero trace", []string{"00-" + strings.Repeat("0", 32) + "-00f067aa0ba902b7-01"}, false, false},
		{"zero parent", []string{"00-" + tid + "-0000000000000000-01"}, false, false},
		{"short", []string{"00-" + tid + "-00f067aa0ba902b7"}, false, false},
		{"bad separators", []string{"00_" + tid + "-00f067aa0ba902b7-01"}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, sampled, ok := traceparent(tc.vs)
			if ok != tc.ok || sampled != tc.sampled || (ok && id != tid) {
				t.Fatalf("traceparent(%q) = %q, %v, %v; want %v, %v", tc.vs, id, sampled, ok, tc.sampled, tc.ok)
			}
		})
	}
}

// TestUnrecordedTraceContext: a new trace and what goes upstream are
// well-formed W3C values, unsampled, and the ratio decides which traces
// are recorded.
func TestUnrecordedTraceContext(t *testing.T) {
	t.Parallel()
	id := newTraceID()
	h := http.Header{}
	injectUnsampled(h, id)
	got, sampled, ok := traceparent(h["Traceparent"])
	if !ok || sampled || got != id {
		t.Fatalf("sent %q: %q, %v, %v", h["Traceparent"], got, sampled, ok)
	}
	if newTraceID() == id {
		t.Fatal("two trace IDs alike")
	}
	for _, tc := range []struct {
		ratio    float64
		min, max int
	}{{0, 0, 0}, {1, 10000, 10000}, {0.01, 30, 200}} {
		r := tc.ratio
		f, _ := newFastSampling(configTracing(&r), func(string) string { return "" })
		n := 0
		for range 10000 {
			if f.record() {
				n++
			}
		}
		if n < tc.min || n > tc.max {
			t.Fatalf("ratio %v: %d of 10000 recorded, want %d-%d", tc.ratio, n, tc.min, tc.max)
		}
	}
}

func configTracing(ratio *float64) config.Tracing { return config.Tracing{SampleRatio: ratio} }
