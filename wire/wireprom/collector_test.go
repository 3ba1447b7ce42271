package wireprom_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wireprom"
)

type fakeServer struct{ st wire.ServerStats }

func (f fakeServer) Stats() wire.ServerStats { return f.st }

type fakeClient struct{ st wire.ClientStats }

func (f fakeClient) Stats() wire.ClientStats { return f.st }

// hist is a histogram with one call in the 100µs bucket and one over 10s.
func hist() wire.Histogram {
	bounds := []time.Duration{100 * time.Microsecond, time.Second}
	return wire.Histogram{Bounds: bounds, Counts: []uint64{1, 0, 1}, Count: 2, Sum: 11 * time.Second}
}

func TestCollectorExports(t *testing.T) {
	t.Parallel()
	c := wireprom.NewCollector(wireprom.Sources{
		Server: fakeServer{wire.ServerStats{Accepted: 3, BadMagic: 1, Overloaded: 2, Panics: 1, Methods: []wire.MethodStats{{
			Method: "cache.get", Calls: 7, Errors: map[string]uint64{"not_owner": 2}, BytesSent: 100, BytesReceived: 40, InFlight: 1, Latency: hist(),
		}}}},
		Client: fakeClient{wire.ClientStats{Dials: 4, DialErrors: 1, Retries: 2}},
	})
	want := `
# HELP pingora_wire_server_call_duration_seconds Time to a call's answer (a stream's first frame), by method.
# TYPE pingora_wire_server_call_duration_seconds histogram
pingora_wire_server_call_duration_seconds_bucket{method="cache.get",le="0.0001"} 1
pingora_wire_server_call_duration_seconds_bucket{method="cache.get",le="1"} 1
pingora_wire_server_call_duration_seconds_bucket{method="cache.get",le="+Inf"} 2
pingora_wire_server_call_duration_seconds_sum{method="cache.get"} 11
pingora_wire_server_call_duration_seconds_count{method="cache.get"} 2
# HELP pingora_wire_server_errors_total Failed server calls, by method and error code.
# TYPE pingora_wire_server_errors_total counter
pingora_wire_server_errors_total{code="not_owner",method="cache.get"} 2
pingora_wire_server_errors_total{code="deadline",method="cache.get"} 0
# HELP pingora_wire_server_bytes_total Body bytes of server calls, by method and direction (sent, received).
# TYPE pingora_wire_server_bytes_total counter
pingora_wire_server_bytes_total{direction="received",method="cache.get"} 40
pingora_wire_server_bytes_total{direction="sent",method="cache.get"} 100
# HELP pingora_wire_server_in_flight Calls started and not finished, by method.
# TYPE pingora_wire_server_in_flight gauge
pingora_wire_server_in_flight{method="cache.get"} 1
# HELP pingora_wire_server_refused_total Connections or requests the RPC server refused, by reason (bad_magic, protocol_error, unknown_method, overloaded, too_many_conns).
# TYPE pingora_wire_server_refused_total counter
pingora_wire_server_refused_total{reason="bad_magic"} 1
pingora_wire_server_refused_total{reason="overloaded"} 2
pingora_wire_server_refused_total{reason="protocol_error"} 0
pingora_wire_server_refused_total{reason="too_many_conns"} 0
pingora_wire_server_refused_total{reason="unknown_method"} 0
# HELP pingora_wire_client_dial_errors_total Dials of the RPC client that failed.
# TYPE pingora_wire_client_dial_errors_total counter
pingora_wire_client_dial_errors_total 1
# HELP pingora_wire_client_retries_total Calls the RPC client sent again on a new connection because the reused one was dead.
# TYPE pingora_wire_client_retries_total counter
pingora_wire_client_retries_total 2
`
	got := scrape(t, c)
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		if !strings.Contains(got, line+"\n") {
			t.Errorf("exposition lacks %q", line)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", got)
	}
}

// scrape registers c on a pedantic registry (which checks every metric
// against its description) and returns the text exposition.
func scrape(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// TestCollectorNilSources: a Collector with no sources, or nil parts,
// exports nothing and does not panic.
func TestCollectorNilSources(t *testing.T) {
	t.Parallel()
	if got := scrape(t, wireprom.NewCollector(wireprom.Sources{})); got != "" {
		t.Fatalf("collected from no sources:\n%s", got)
	}
	var srv *wire.Server
	var mux *wire.Mux
	got := scrape(t, wireprom.NewCollector(wireprom.Sources{Server: srv, Mux: mux}))
	for _, line := range []string{"pingora_wire_server_connections_total 0\n", "pingora_wire_mux_connections_total 0\n"} {
		if !strings.Contains(got, line) {
			t.Fatalf("nil parts: exposition lacks %q:\n%s", line, got)
		}
	}
}
