package node

import (
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/wire"
)

// TestAddMethodStats: two clients' counters of one method add up,
// histogram buckets included; a method only one has is kept as it is.
func TestAddMethodStats(t *testing.T) {
	t.Parallel()
	h := func(counts ...uint64) wire.Histogram {
		var n uint64
		for _, c := range counts {
			n += c
		}
		return wire.Histogram{Bounds: []time.Duration{time.Millisecond}, Counts: counts, Count: n, Sum: time.Duration(n) * time.Millisecond}
	}
	a := wire.MethodStats{Method: "m", Calls: 2, BytesSent: 10, InFlight: 1, Errors: map[string]uint64{"peer_gone": 1}, Latency: h(1, 1)}
	b := wire.MethodStats{Method: "m", Calls: 3, BytesReceived: 7, Errors: map[string]uint64{"peer_gone": 2, "deadline": 1}, Latency: h(3, 0)}
	got := addMethodStats(a, b)
	if got.Calls != 5 || got.BytesSent != 10 || got.BytesReceived != 7 || got.InFlight != 1 ||
		got.Errors["peer_gone"] != 3 || got.Errors["deadline"] != 1 ||
		got.Latency.Counts[0] != 4 || got.Latency.Counts[1] != 1 || got.Latency.Count != 5 || got.Latency.Sum != 5*time.Millisecond {
		t.Fatalf("added: %+v", got)
	}
	if a.Errors["peer_gone"] != 1 || a.Latency.Counts[0] != 1 {
		t.Fatal("addMethodStats changed its argument")
	}
	var none clientsSource = []*wire.Client{nil, nil}
	if st := none.Stats(); st.Dials != 0 || len(st.Methods) != 0 {
		t.Fatalf("nil clients: %+v", st)
	}
}
