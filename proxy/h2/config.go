package h2

import (
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

// Config tunes a connection. Zero fields take the defaults.
type Config struct {
	// MaxConcurrentStreams is advertised and enforced; streams over it are
	// refused with REFUSED_STREAM (default 250).
	MaxConcurrentStreams uint32
	// MaxHeaderListSize caps a request's decoded header block, as RFC 9113
	// counts it (default 64 KiB): a request over it is answered 431 and
	// its connection goes on. A block that takes more than twice as many
	// bytes on the wire (64 KiB at least) ends the connection.
	MaxHeaderListSize uint32
	// MaxHeaders caps the number of request header fields (default 128).
	MaxHeaders int
	// StreamWindow is the receive window of each stream, the most request
	// body buffered per stream (default 1 MiB).
	StreamWindow int32
	// ConnWindow is the connection's receive window, the most request
	// body buffered over all its streams (default 1 MiB).
	ConnWindow int32
	// PrefaceTimeout bounds reading the client's preface (default 10s).
	PrefaceTimeout time.Duration
	// IdleTimeout closes a connection with no open stream for this long,
	// with GOAWAY (default 60s).
	IdleTimeout time.Duration
	// WriteTimeout bounds a write to the connection that makes no
	// progress: a client that stops reading (default 60s).
	WriteTimeout time.Duration
	// StreamIdleTimeout bounds a stream's wait for its request body that
	// makes no progress. Long-lived streams (gRPC) idle for long, so it is
	// longer than the connection's timeouts (default 5m, as Envoy's
	// stream_idle_timeout).
	StreamIdleTimeout time.Duration
	// StreamWriteTimeout bounds a response write whose flow-control
	// window stays shut: a client that stopped reading the stream, as
	// WriteTimeout bounds one that stopped reading the connection
	// (default: WriteTimeout). An idle stream waits for no window: only a
	// write with bytes to send does.
	StreamWriteTimeout time.Duration
	// MinSendRate is the least a stream's client must take of its
	// response, in bytes a second, counted only while a response write
	// waits for flow-control window: a stream that waited longer than
	// MinRateGrace plus 1/MinSendRate for each byte it was sent is reset
	// with ENHANCE_YOUR_CALM and its Write returns ErrTooSlow (0: no
	// minimum; see rate.go).
	MinSendRate int
	// MinRecvRate is the least a stream's client must send of its
	// request body, in bytes a second, counted only while a body Read
	// waits for DATA, as MinSendRate (0: no minimum).
	MinRecvRate int
	// MinRateGrace is the wait every stream has before the minimum
	// rates apply (default 5s when a rate is set).
	MinRateGrace time.Duration
	// OnSlowClient, when set, is told of each stream reset for a client
	// under a minimum rate: dir is SlowSend or SlowRecv. It runs on the
	// stream's writer or reader and must not block (default nil).
	OnSlowClient func(dir string)
	// Clock times the waits on the client (default: real time).
	Clock clock.Clock
	// DrainWait bounds a drain's wait for the client's PING ACK, after
	// which the last stream is fixed anyway (default 1s).
	DrainWait time.Duration
	// OnReject, when set, is told of each request refused before a handler
	// saw it: a malformed head, reset with PROTOCOL_ERROR (RFC 9113
	// section 8.1.1), or one over the header limits, answered 431 (a gRPC
	// call: grpc-status RESOURCE_EXHAUSTED; trailers over them reset the
	// stream with ENHANCE_YOUR_CALM, as the request already runs). reason
	// is a short fixed label (proxy/h1's codes, such as "invalid_target",
	// and invalid_scheme, invalid_pseudo_header, missing_pseudo_header,
	// host_mismatch, connection_specific_field, invalid_te,
	// malformed_header_block); err has the detail. It runs on the
	// connection's reader goroutine and must not block (default nil: not
	// reported).
	OnReject func(reason string, err error)
	// OnRefusedHead, when set, is told of each request answered (not
	// reset) before a handler saw it: one over the header limits, after
	// OnReject heard of it. It is for the access log, which has a line
	// for every answered request. It runs on the connection's reader
	// goroutine and must not block (default nil).
	OnRefusedHead func(RefusedHead)
	// OnFlood, when set, is told of a connection ended with GOAWAY
	// ENHANCE_YOUR_CALM for flooding (flood.go): reason is FloodFrames or
	// FloodHeaderBlock; err has the detail. It runs on the connection's
	// reader goroutine and must not block (default nil: not reported).
	OnFlood func(reason string, err error)
}

func (c *Config) setDefaults() {
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = 250
	}
	if c.MaxHeaderListSize == 0 {
		c.MaxHeaderListSize = 64 << 10
	}
	if c.MaxHeaders == 0 {
		c.MaxHeaders = 128
	}
	if c.StreamWindow <= 0 {
		c.StreamWindow = 1 << 20
	}
	if c.ConnWindow <= 0 {
		c.ConnWindow = 1 << 20
	}
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDur(&c.PrefaceTimeout, 10*time.Second)
	setDur(&c.IdleTimeout, 60*time.Second)
	setDur(&c.WriteTimeout, 60*time.Second)
	setDur(&c.StreamIdleTimeout, 5*time.Minute)
	setDur(&c.StreamWriteTimeout, c.WriteTimeout)
	setDur(&c.DrainWait, time.Second)
	setDur(&c.MinRateGrace, 5*time.Second)
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
}

// RefusedHead is a request that Config.OnRefusedHead is told of: the
// pseudo-header fields of its head that fit under the limits ("" for
// those that did not), the status it was answered with (431, or 200 with
// a gRPC status), the reason (as OnReject's) and the detail.
type RefusedHead struct {
	Method, Authority, Path string
	Status                  int
	Reason                  string
	Err                     error
}
