package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/cache"
)

// Config holds the server-wide settings of a proxy Server. Zero fields take
// their default; DefaultConfig returns every default filled in.
type Config struct {
	// Downstream bounds what clients may do.
	Downstream DownstreamConfig
	// Upstream holds the defaults for every Peer that leaves a timeout zero.
	Upstream UpstreamTimeouts
	// Pool sizes the upstream connection pools.
	Pool PoolConfig
	// Retries is how many times a request is sent to another peer after a
	// retryable failure (connect error, or reset of a reused connection before
	// any response byte), unless a phase sets Session.MaxRetries; -1 means
	// never retry (default 2).
	Retries int
	// Via, when set, is added to requests and responses as "Via: 1.1 <Via>"
	// (default "": no Via header).
	Via string
	// Metrics registers the engine's Prometheus collectors; nil means they
	// are kept but not registered (default nil).
	Metrics prometheus.Registerer
	// AccessLog receives one JSON record per request; nil disables the
	// access log (default nil).
	AccessLog *slog.Logger
	// ErrorLog receives engine errors (bad TLS handshakes, accept errors);
	// nil discards them (default nil).
	ErrorLog *slog.Logger
	// CacheStore holds cached responses for the requests whose
	// CacheConfig names no store of its own; caching is on only where a
	// route or a phase sets Session.Cache (default nil: a memory store of
	// cache.DefaultMaxBytes, 256 MiB, made by New).
	CacheStore cache.Store
	// Clock is the time the cache judges freshness and ages by, and the
	// minimum data rates time an HTTP/2 stream's waits on its client by
	// (default: real time).
	Clock clock.Clock
	// Tracer receives a span for each request, upstream attempt and cache
	// lookup (see Tracer); nil turns tracing off at no cost (default nil).
	Tracer Tracer
	// Limiter decides every request against rate limits, in the request
	// phase (see Limiter); nil means no limits (default nil).
	Limiter Limiter
	// NoSplice turns off splice(2) for response bodies relayed from an
	// HTTP/1.1 upstream to an HTTP/1.1 client over plain TCP (Linux): they
	// are then copied through the process like every other body (default
	// false: spliced when nothing needs to see the body; see splice.go).
	NoSplice bool
}

// DownstreamConfig bounds client connections.
type DownstreamConfig struct {
	// HeaderTimeout bounds reading a whole request head once its first byte
	// arrived, and the TLS handshake; a slow client is disconnected after
	// it with 408 (default 10s). For a connection's first request it counts
	// from the accept (or the TLS handshake's end), the wait for that first
	// byte included, as nginx's client_header_timeout does.
	HeaderTimeout time.Duration
	// KeepAliveTimeout is how long an idle keep-alive connection waits for
	// the next request (default 60s).
	KeepAliveTimeout time.Duration
	// ReadIdleTimeout bounds a request body read that makes no progress
	// (default 60s).
	ReadIdleTimeout time.Duration
	// WriteIdleTimeout bounds a response write that makes no progress
	// (default 60s).
	WriteIdleTimeout time.Duration
	// MaxHeaderBytes caps a request head; larger heads get 431 (default 64 KiB).
	MaxHeaderBytes int
	// MaxHeaders caps the number of request header fields; more get 431
	// (default 128).
	MaxHeaders int
	// MaxConns caps concurrent client connections; at the cap the listener
	// stops accepting until one closes (default 16384).
	MaxConns int
	// MaxConnsPerIP caps the client connections open from one address,
	// across every listener of the Server; one more is reset as it is
	// accepted, before it costs a goroutine, a buffer, a TLS handshake or
	// one of MaxConns's slots, and counted in
	// pingora_downstream_connections_refused_total{reason="max_conns_per_ip"}
	// (default 0: no cap). The address is the TCP peer's, never one a
	// forwarding field names: behind a load balancer or NAT every client
	// shares a few, so leave it off there, or list the balancers in the
	// listener's TrustedProxies, whose connections are not counted. An
	// IPv4 address (or an IPv4-mapped IPv6 one) counts alone; IPv6
	// addresses count by their /64, as one host commonly holds a whole
	// /64 and can take a new address from it for each connection.
	MaxConnsPerIP int
	// MaxBodyBytes is the request body limit when a phase does not set
	// Session.MaxBodyBytes; larger bodies get 413 (default 0: no limit).
	MaxBodyBytes int64
	// MaxConcurrentStreams caps HTTP/2 streams per client connection
	// (default 250).
	MaxConcurrentStreams uint32
	// TunnelIdleTimeout closes an upgraded (WebSocket) tunnel after no byte
	// crossed it either way for this long (default 1h).
	TunnelIdleTimeout time.Duration
	// DrainLinger is how long an idle keep-alive connection stays open after
	// shutdown began, so a request already on the wire is answered with
	// "Connection: close" instead of meeting a closed socket (default 1s).
	DrainLinger time.Duration
	// MinSendRate is the least a client must take of a response, in
	// bytes a second, counted only while the proxy has response bytes the
	// client does not take (a write to an HTTP/1.1 client blocked, an
	// HTTP/2 stream waiting for flow-control window): never while the
	// connection idles between requests or the proxy waits on its
	// upstream. A client may wait MinRateGrace, plus 1/MinSendRate for
	// each byte it took so far: one that waited longer is too slow, and
	// its HTTP/1.1 connection closes, or its HTTP/2 stream is reset with
	// ENHANCE_YOUR_CALM; the upstream request is abandoned, and the
	// client counted in pingora_downstream_slow_clients_total. Tunnels
	// and gRPC calls, which move at their applications' pace, are exempt.
	// HTTP/1.1 responses are counted at the socket, on Linux only (raw
	// socket I/O; elsewhere WriteIdleTimeout alone bounds them), a byte
	// once the client acknowledged it (default 240, Kestrel's
	// MinResponseDataRate; -1: no minimum).
	MinSendRate int
	// MinRecvRate is the least a client must send of a request body, in
	// bytes a second, counted only while the proxy waits for body bytes
	// it asked for, as MinSendRate (default 240, Kestrel's
	// MinRequestBodyDataRate; -1: no minimum).
	MinRecvRate int
	// MinRateGrace is the wait every request has before the minimum
	// rates bite (default 5s).
	MinRateGrace time.Duration
	// LingerTimeout bounds a lingering close (nginx's lingering_close): when
	// a response ends a connection while the client may still be sending (a
	// request body left unread, a rejected head), the proxy shuts its write
	// side and reads and discards what still arrives for up to this long, so
	// the client's kernel does not meet a reset that destroys the response
	// before the client has read it (default 5s).
	LingerTimeout time.Duration
}

// UpstreamTimeouts bound each step of talking to an upstream peer.
type UpstreamTimeouts struct {
	// Connect bounds the TCP connect (default 5s).
	Connect time.Duration
	// TLSHandshake bounds the TLS handshake (default 10s).
	TLSHandshake time.Duration
	// ResponseHeader bounds the wait for the response head after the request
	// was sent (default 60s).
	ResponseHeader time.Duration
	// ReadIdle bounds a response body read that makes no progress (default 60s).
	ReadIdle time.Duration
	// WriteIdle bounds a request write that makes no progress (default 60s).
	WriteIdle time.Duration
}

// PoolConfig sizes the upstream connection pools.
type PoolConfig struct {
	// MaxIdlePerPeer is how many idle HTTP/1.1 connections are kept per peer
	// (default 128).
	MaxIdlePerPeer int
	// IdleTimeout closes a pooled connection idle for this long (default 90s).
	IdleTimeout time.Duration
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Downstream: DownstreamConfig{
			HeaderTimeout:        10 * time.Second,
			KeepAliveTimeout:     60 * time.Second,
			ReadIdleTimeout:      60 * time.Second,
			WriteIdleTimeout:     60 * time.Second,
			MaxHeaderBytes:       64 << 10,
			MaxHeaders:           128,
			MaxConns:             16384,
			MaxConcurrentStreams: 250,
			DrainLinger:          time.Second,
			LingerTimeout:        5 * time.Second,
			TunnelIdleTimeout:    time.Hour,
			MinSendRate:          240,
			MinRecvRate:          240,
			MinRateGrace:         5 * time.Second,
		},
		Upstream: DefaultUpstreamTimeouts(),
		Pool:     PoolConfig{MaxIdlePerPeer: 128, IdleTimeout: 90 * time.Second},
		Retries:  2,
	}
}

// DefaultUpstreamTimeouts returns the upstream timeout defaults.
func DefaultUpstreamTimeouts() UpstreamTimeouts {
	return UpstreamTimeouts{
		Connect:        5 * time.Second,
		TLSHandshake:   10 * time.Second,
		ResponseHeader: 60 * time.Second,
		ReadIdle:       60 * time.Second,
		WriteIdle:      60 * time.Second,
	}
}

// withDefaults fills the zero fields of c from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	dd, cd := &d.Downstream, &c.Downstream
	setDur(&cd.HeaderTimeout, dd.HeaderTimeout)
	setDur(&cd.KeepAliveTimeout, dd.KeepAliveTimeout)
	setDur(&cd.ReadIdleTimeout, dd.ReadIdleTimeout)
	setDur(&cd.WriteIdleTimeout, dd.WriteIdleTimeout)
	setDur(&cd.DrainLinger, dd.DrainLinger)
	setDur(&cd.LingerTimeout, dd.LingerTimeout)
	setDur(&cd.TunnelIdleTimeout, dd.TunnelIdleTimeout)
	setDur(&cd.MinRateGrace, dd.MinRateGrace)
	setInt(&cd.MinSendRate, dd.MinSendRate)
	setInt(&cd.MinRecvRate, dd.MinRecvRate)
	setInt(&cd.MaxHeaderBytes, dd.MaxHeaderBytes)
	setInt(&cd.MaxHeaders, dd.MaxHeaders)
	setInt(&cd.MaxConns, dd.MaxConns)
	if cd.MaxConcurrentStreams == 0 {
		cd.MaxConcurrentStreams = dd.MaxConcurrentStreams
	}
	c.Upstream = c.Upstream.withDefaults(d.Upstream)
	setInt(&c.Pool.MaxIdlePerPeer, d.Pool.MaxIdlePerPeer)
	setDur(&c.Pool.IdleTimeout, d.Pool.IdleTimeout)
	switch c.Retries {
	case 0:
		c.Retries = d.Retries
	case -1:
		c.Retries = 0
	}
	return c
}

func (t UpstreamTimeouts) withDefaults(d UpstreamTimeouts) UpstreamTimeouts {
	setDur(&t.Connect, d.Connect)
	setDur(&t.TLSHandshake, d.TLSHandshake)
	setDur(&t.ResponseHeader, d.ResponseHeader)
	setDur(&t.ReadIdle, d.ReadIdle)
	setDur(&t.WriteIdle, d.WriteIdle)
	return t
}

func setDur(p *time.Duration, d time.Duration) {
	if *p == 0 {
		*p = d
	}
}

func setInt(p *int, d int) {
	if *p == 0 {
		*p = d
	}
}

// Validate reports the first invalid field of c, by name. Zero fields are
// valid (they take the default).
func (c Config) Validate() error {
	durs := []struct {
		name string
		d    time.Duration
	}{
		{"Downstream.HeaderTimeout", c.Downstream.HeaderTimeout},
		{"Downstream.KeepAliveTimeout", c.Downstream.KeepAliveTimeout},
		{"Downstream.ReadIdleTimeout", c.Downstream.ReadIdleTimeout},
		{"Downstream.WriteIdleTimeout", c.Downstream.WriteIdleTimeout},
		{"Downstream.DrainLinger", c.Downstream.DrainLinger},
		{"Downstream.LingerTimeout", c.Downstream.LingerTimeout},
		{"Downstream.TunnelIdleTimeout", c.Downstream.TunnelIdleTimeout},
		{"Downstream.MinRateGrace", c.Downstream.MinRateGrace},
		{"Pool.IdleTimeout", c.Pool.IdleTimeout},
	}
	for _, d := range durs {
		if d.d < 0 {
			return fmt.Errorf("proxy: %s (%s) cannot be negative", d.name, d.d)
		}
	}
	if err := c.Upstream.Validate(); err != nil {
		return err
	}
	switch {
	case c.Downstream.MaxHeaderBytes < 0 || c.Downstream.MaxHeaderBytes > 1<<20:
		return fmt.Errorf("proxy: Downstream.MaxHeaderBytes (%d) must be between 0 and 1 MiB", c.Downstream.MaxHeaderBytes)
	case c.Downstream.MaxHeaders < 0:
		return fmt.Errorf("proxy: Downstream.MaxHeaders (%d) cannot be negative", c.Downstream.MaxHeaders)
	case c.Downstream.MinSendRate < -1:
		return fmt.Errorf("proxy: Downstream.MinSendRate (%d) must be -1 (no minimum) or more", c.Downstream.MinSendRate)
	case c.Downstream.MinRecvRate < -1:
		return fmt.Errorf("proxy: Downstream.MinRecvRate (%d) must be -1 (no minimum) or more", c.Downstream.MinRecvRate)
	case c.Downstream.MaxConns < 0:
		return fmt.Errorf("proxy: Downstream.MaxConns (%d) cannot be negative", c.Downstream.MaxConns)
	case c.Downstream.MaxConnsPerIP < 0:
		return fmt.Errorf("proxy: Downstream.MaxConnsPerIP (%d) cannot be negative (0: no cap)", c.Downstream.MaxConnsPerIP)
	case c.Downstream.MaxBodyBytes < 0:
		return fmt.Errorf("proxy: Downstream.MaxBodyBytes (%d) cannot be negative", c.Downstream.MaxBodyBytes)
	case c.Pool.MaxIdlePerPeer < 0:
		return fmt.Errorf("proxy: Pool.MaxIdlePerPeer (%d) cannot be negative", c.Pool.MaxIdlePerPeer)
	case c.Retries < -1 || c.Retries > 16:
		return fmt.Errorf("proxy: Retries (%d) must be between -1 (never) and 16", c.Retries)
	}
	return nil
}

// Validate reports every negative timeout, joined (errors.Join), each a
// *FieldError naming it.
func (t UpstreamTimeouts) Validate() error {
	var f fieldErrs
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"Connect", t.Connect}, {"TLSHandshake", t.TLSHandshake}, {"ResponseHeader", t.ResponseHeader}, {"ReadIdle", t.ReadIdle}, {"WriteIdle", t.WriteIdle}} {
		if d.d < 0 {
			f.add(d.name, "%s cannot be negative", d.d)
		}
	}
	return errors.Join(f...)
}
