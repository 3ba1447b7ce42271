package proxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
	connLimitWaits  prometheus.Counter
	tunnels         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
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
		connLimitWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pingora_downstream_connection_limit_waits_total",
			Help: "Times the accept loop waited because MaxConns client connections were open.",
		}),
		tunnels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pingora_tunnels_active",
			Help: "Open upgraded (WebSocket) tunnels.",
		}),
	}
	created := m.upstreamConns.WithLabelValues("created")
	reused := m.upstreamConns.WithLabelValues("reused")
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
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.connectDuration, m.upstreamErrors,
			m.activeConns, m.upstreamConns, m.reuseRatio, m.retries, m.poolEvictions, m.connLimitWaits, m.tunnels} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("proxy: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil || d.Counter == nil {
		return 0
	}
	return d.Counter.GetValue()
}

// codeClass returns "2xx" and the like.
func codeClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	case code >= 200:
		return "2xx"
	case code >= 100:
		return "1xx"
	}
	return "none"
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "OTHER"
}
