package wireprom

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/wire"
)

// Sources are the parts whose stats a Collector exports; a nil field is
// skipped. *wire.Server, *wire.Client and *wire.Mux satisfy them (a nil
// pointer of those types reports zeros).
type Sources struct {
	Server interface{ Stats() wire.ServerStats }
	Client interface{ Stats() wire.ClientStats }
	Mux    interface{ Stats() wire.MuxStats }
}

// Collector is a prometheus.Collector over wire's stats snapshots.
type Collector struct {
	src            Sources
	server, client sideDescs

	serverConns, serverRefused, serverPanics *prometheus.Desc
	clientDials, clientDialErrors            *prometheus.Desc
	clientRetries                            *prometheus.Desc
	muxConns, muxDropped, muxAcceptFailures  *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// sideDescs are the per-method metrics both sides export.
type sideDescs struct {
	calls, errors, bytes, inFlight, duration *prometheus.Desc
	classes                                  []string // error classes, each exported from zero
}

func newSideDescs(side string) sideDescs {
	name := func(n string) string { return "pingora_wire_" + side + "_" + n }
	return sideDescs{
		calls:    prometheus.NewDesc(name("calls_total"), "Finished "+side+" calls, by method.", []string{"method"}, nil),
		errors:   prometheus.NewDesc(name("errors_total"), "Failed "+side+" calls, by method and error code.", []string{"method", "code"}, nil),
		bytes:    prometheus.NewDesc(name("bytes_total"), "Body bytes of "+side+" calls, by method and direction (sent, received).", []string{"method", "direction"}, nil),
		inFlight: prometheus.NewDesc(name("in_flight"), "Calls started and not finished, by method.", []string{"method"}, nil),
		duration: prometheus.NewDesc(name("call_duration_seconds"), "Time to a call's answer (a stream's first frame), by method.", []string{"method"}, nil),
		classes:  wire.ErrorClasses(side == "client"),
	}
}

// NewCollector returns a Collector over src.
func NewCollector(src Sources) *Collector {
	return &Collector{
		src:    src,
		server: newSideDescs("server"),
		client: newSideDescs("client"),
		serverConns: prometheus.NewDesc("pingora_wire_server_connections_total",
			"Connections the RPC server accepted.", nil, nil),
		serverRefused: prometheus.NewDesc("pingora_wire_server_refused_total",
			"Connections or requests the RPC server refused, by reason (bad_magic, protocol_error, unknown_method, overloaded, too_many_conns).", []string{"reason"}, nil),
		serverPanics: prometheus.NewDesc("pingora_wire_server_panics_total",
			"Handler panics the RPC server recovered.", nil, nil),
		clientDials: prometheus.NewDesc("pingora_wire_client_dials_total",
			"Connections the RPC client dialled.", nil, nil),
		clientDialErrors: prometheus.NewDesc("pingora_wire_client_dial_errors_total",
			"Dials of the RPC client that failed.", nil, nil),
		clientRetries: prometheus.NewDesc("pingora_wire_client_retries_total",
			"Calls the RPC client sent again on a new connection because the reused one was dead.", nil, nil),
		muxConns: prometheus.NewDesc("pingora_wire_mux_connections_total",
			"Connections accepted on the shared cluster port.", nil, nil),
		muxDropped: prometheus.NewDesc("pingora_wire_mux_dropped_total",
			"Connections the cluster port closed before a protocol took them, by reason (unknown_byte, no_first_byte, not_accepted, over_limit: the protocol had its limit of connections open, or too many connections, in all or from one address, had yet to send their first byte).", []string{"reason"}, nil),
		muxAcceptFailures: prometheus.NewDesc("pingora_wire_mux_accept_failures_total",
			"Accepts on the shared cluster port that failed for want of descriptors (too many open files), buffers or memory, each retried after a back-off (5ms doubling to 1s). Compare process_open_fds with process_max_fds to see it coming.", nil, nil),
	}
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range []sideDescs{c.server, c.client} {
		ch <- s.calls
		ch <- s.errors
		ch <- s.bytes
		ch <- s.inFlight
		ch <- s.duration
	}
	for _, d := range []*prometheus.Desc{c.serverConns, c.serverRefused, c.serverPanics, c.clientDials, c.clientDialErrors, c.clientRetries, c.muxConns, c.muxDropped, c.muxAcceptFailures} {
		ch <- d
	}
}

// Collect reads a snapshot from each source and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Server != nil {
		st := c.src.Server.Stats()
		counter(ch, c.serverConns, st.Accepted)
		counter(ch, c.serverRefused, st.BadMagic, "bad_magic")
		counter(ch, c.serverRefused, st.ProtocolErrors, "protocol_error")
		counter(ch, c.serverRefused, st.UnknownMethod, "unknown_method")
		counter(ch, c.serverRefused, st.Overloaded, "overloaded")
		counter(ch, c.serverRefused, st.Refused, "too_many_conns")
		counter(ch, c.serverPanics, st.Panics)
		c.server.collect(ch, st.Methods)
	}
	if c.src.Client != nil {
		st := c.src.Client.Stats()
		counter(ch, c.clientDials, st.Dials)
		counter(ch, c.clientDialErrors, st.DialErrors)
		counter(ch, c.clientRetries, st.Retries)
		c.client.collect(ch, st.Methods)
	}
	if c.src.Mux != nil {
		st := c.src.Mux.Stats()
		counter(ch, c.muxConns, st.Accepted)
		counter(ch, c.muxDropped, st.UnknownByte, "unknown_byte")
		counter(ch, c.muxDropped, st.NoFirstByte, "no_first_byte")
		counter(ch, c.muxDropped, st.NotAccepted, "not_accepted")
		counter(ch, c.muxDropped, st.OverLimit, "over_limit")
		counter(ch, c.muxAcceptFailures, st.AcceptFailures)
	}
}

func (s sideDescs) collect(ch chan<- prometheus.Metric, methods []wire.MethodStats) {
	for _, m := range methods {
		counter(ch, s.calls, m.Calls, m.Method)
		for _, code := range s.classes {
			counter(ch, s.errors, m.Errors[code], m.Method, code)
		}
		for code, n := range m.Errors {
			if !slices.Contains(s.classes, code) { // a class this version does not know
				counter(ch, s.errors, n, m.Method, code)
			}
		}
		counter(ch, s.bytes, m.BytesSent, m.Method, "sent")
		counter(ch, s.bytes, m.BytesReceived, m.Method, "received")
		ch <- prometheus.MustNewConstMetric(s.inFlight, prometheus.GaugeValue, float64(m.InFlight), m.Method)
		ch <- histogram(s.duration, m.Latency, m.Method)
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

// histogram turns wire's per-bucket counts into Prometheus's cumulative
// ones.
func histogram(d *prometheus.Desc, h wire.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets, labels...)
}
