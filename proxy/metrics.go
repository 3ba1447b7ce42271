package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/proxy/h2"
)

// metrics are the engine's Prometheus collectors, registered on the
// caller's registry (Config.Metrics).
type metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	connectDuration prometheus.Histogram
	upstreamErrors  *prometheus.CounterVec
	activeConns     prometheus.Gauge
	upstreamConns   *prometheus.CounterVec
	reuseRatio      prometheus.GaugeFunc
	retries         prometheus.Counter
	poolEvictions   prometheus.Counter
	maxConns        *prometheus.CounterVec
	connLimitWaits  prometheus.Counter
	connsRefused    *prometheus.CounterVec
	tunnels         prometheus.Gauge
	spliced         prometheus.Counter
	rejected        *prometheus.CounterVec
	floods          *prometheus.CounterVec
	acceptFailures  *prometheus.CounterVec
	slowClients     *prometheus.CounterVec
	panics          prometheus.Counter
	cache           *cacheMetrics

	// Resolved children, so the per-request path does not hash label
	// values: connsCreated/connsReused, and per route the request counters
	// by method and status class and the duration histogram.
	connsCreated, connsReused prometheus.Counter
	routes                    sync.Map // route name -> *routeMetrics
}

// routeMetrics holds one route's resolved metric children. A counter is
// resolved the first time its (method, class) pair is seen.
type routeMetrics struct {
	duration prometheus.Observer
	requests [len(methodLabels)][len(classLabels)]atomic.Pointer[prometheus.Counter]
}

var (
	methodLabels = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER"}
	classLabels  = [...]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx"}
)

// observeRequest counts one finished request and its duration.
func (m *metrics) observeRequest(route, method string, code int, seconds float64) {
	rm := m.route(route)
	mi, ci := methodIndex(method), classIndex(code)
	slot := &rm.requests[mi][ci]
	c := slot.Load()
	if c == nil {
		cc := m.requests.WithLabelValues(route, methodLabels[mi], classLabels[ci])
		c = &cc
		slot.Store(c)
	}
	(*c).Inc()
	rm.duration.Observe(seconds)
}

func (m *metrics) route(name string) *routeMetrics {
	if v, ok := m.routes.Load(name); ok {
		return v.(*routeMetrics)
	}
	v, _ := m.routes.LoadOrStore(name, &routeMetrics{duration: m.duration.WithLabelValues(name)})
	return v.(*routeMetrics)
}

// newMetrics makes the engine's collectors and registers them on reg, with
// store's figures when it reports them.
func newMetrics(reg prometheus.Registerer, store cache.Store) (*metrics, error) {
	m := &metrics{
		cache: newCacheMetrics(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_requests_total",
			Help: "Requests served, by route, method and status class.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pingora_request_duration_seconds",
			Help:    "Time from the request head to the end of the response, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		connectDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pingora_upstream_connect_duration_seconds",
			Help:    "Time to open a TCP connection to an upstream peer.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_upstream_errors_total",
			Help: "Upstream failures by kind.",
		}, []string{"kind"}),
		activeConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pingora_downstream_connections_active",
			Help: "Open client connections.",
		}),
		upstreamConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_upstream_connections_total",
			Help: "Upstream requests by connection: a new connection (created) or a pooled one (reused).",
		}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pingora_upstream_retries_total",
			Help: "Requests sent again to another peer after a retryable failure.",
		}),
		poolEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pingora_upstream_pool_evictions_total",
			Help: "Pooled connections closed: found dead or expired when taken, or pushed out of a full pool.",
		}),
		maxConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_upstream_max_conns_total",
			Help: "Attempts that met a peer at its max_conns, by result: waited (got a connection from the queue), failed_over (went to another peer at once), refused (queue full or wait over: 503 unless another peer took it).",
		}, []string{"result"}),
		connLimitWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pingora_downstream_connection_limit_waits_total",
			Help: "Times the accept loop waited because MaxConns client connections were open.",
		}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_downstream_connections_refused_total",
			Help: "Client connections reset as they were accepted, and HTTP/2 streams answered 503, by reason: max_conns_per_ip (the address, an IPv6 one's /64, had downstream.max_conns_per_ip open already).",
		}, []string{"reason"}),
		tunnels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pingora_tunnels_active",
			Help: "Open upgraded (WebSocket) tunnels.",
		}),
		spliced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pingora_spliced_responses_total",
			Help: "Response bodies moved from an HTTP/1.1 upstream to an HTTP/1.1 client with splice(2), never copied through the process (node file: splice).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_downstream_rejected_total",
			Help: "Client requests refused as malformed before any phase saw them, by reason: HTTP/1.1 heads answered 4xx/5xx, HTTP/2 streams reset with PROTOCOL_ERROR, or over the header limits answered 431 (a gRPC call: grpc-status 8) or, for trailers, reset.",
		}, []string{"reason"}),
		floods: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_downstream_floods_total",
			Help: "HTTP/2 client connections ended with GOAWAY ENHANCE_YOUR_CALM for flooding, by reason: overhead_frames (PING, SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM, empty DATA and the like, beyond what its requests and bodies earn), header_block (a header block of endless CONTINUATION frames), rapid_reset (streams opened only to be reset, CVE-2023-44487).",
		}, []string{"reason"}),
		acceptFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_downstream_accept_failures_total",
			Help: "Accepts on a proxy listener that failed, by listener: for want of descriptors (too many open files), buffers or memory, or a connection aborted before it was accepted; each is retried after a back-off (5ms doubling to 1s), the clients waiting in the listen backlog. Compare process_open_fds with process_max_fds to see it coming.",
		}, []string{"listener"}),
		slowClients: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pingora_downstream_slow_clients_total",
			Help: "Clients cut for falling under a minimum data rate while the proxy waited on them, by direction: send (a response taken slower than downstream.min_send_rate: HTTP/2 stream reset with ENHANCE_YOUR_CALM, HTTP/1.1 connection closed mid-response, counted at the socket on Linux), recv (a request body sent slower than downstream.min_recv_rate: HTTP/2 stream reset, HTTP/1.1 answered 408 and closed).",
		}, []string{"direction"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pingora_panics_total",
			Help: "Panics recovered in the code a request ran (a phase, the Limiter, the Tracer, a cache store): the request failed (500, or its response cut), the process and the other requests went on. An abort with http.ErrAbortHandler is not counted.",
		}),
	}
	m.resolveConns()
	// Both reasons exist from the start, at 0: a flood is rare, and a
	// series that appears only with the first one has no rate to show.
	for _, r := range []string{h2.FloodFrames, h2.FloodHeaderBlock, h2.FloodRapidReset} {
		m.floods.WithLabelValues(r)
	}
	for _, d := range []string{h2.SlowSend, h2.SlowRecv} {
		m.slowClients.WithLabelValues(d)
	}
	m.connsRefused.WithLabelValues(refusedPerIP)
	return m, m.register(reg, store)
}

// resolveConns resolves the connection counters and derives the reuse
// ratio from them.
func (m *metrics) resolveConns() {
	created := m.upstreamConns.WithLabelValues("created")
	reused := m.upstreamConns.WithLabelValues("reused")
	m.connsCreated, m.connsReused = created, reused
	m.reuseRatio = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pingora_upstream_connection_reuse_ratio",
		Help: "Share of upstream requests sent on a reused connection (Pingora's headline figure).",
	}, func() float64 {
		c, r := counterValue(created), counterValue(reused)
		if c+r == 0 {
			return 0
		}
		return r / (c + r)
	})
}

// register puts the collectors, and store's figures when it reports them,
// on reg (nil: nowhere).
func (m *metrics) register(reg prometheus.Registerer, store cache.Store) error {
	if reg == nil {
		return nil
	}
	cs := []prometheus.Collector{m.requests, m.duration, m.connectDuration, m.upstreamErrors,
		m.activeConns, m.upstreamConns, m.reuseRatio, m.retries, m.poolEvictions, m.maxConns, m.connLimitWaits, m.connsRefused, m.tunnels, m.spliced, m.rejected, m.floods, m.acceptFailures, m.slowClients, m.panics}
	cs = append(cs, m.cache.collectors()...)
	if r, ok := store.(cache.StatsReporter); ok {
		cs = append(cs, storeCollectors(r)...)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("proxy: register metrics: %w", err)
		}
	}
	return nil
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil || d.Counter == nil {
		return 0
	}
	return d.Counter.GetValue()
}

// classIndex returns the index in classLabels of code's class ("2xx"...).
func classIndex(code int) int {
	if code < 100 || code > 599 {
		return 0
	}
	return code / 100
}

// methodIndex bounds the method label to the standard methods: its index
// in methodLabels, OTHER for the rest.
func methodIndex(m string) int {
	switch m {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "PATCH":
		return 5
	case "OPTIONS":
		return 6
	case "CONNECT":
		return 7
	case "TRACE":
		return 8
	}
	return len(methodLabels) - 1
}
