package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/proxy/h2"
)

// serveH2 runs the connection on the HTTP/2 server in proxy/h2; each
// stream becomes a request through handle. Shutdown drains it with the
// two-phase GOAWAY (h2.Conn.Shutdown).
func (s *Server[C]) serveH2(c *clientConn) {
	if c.br == nil { // TLS with ALPN h2: nothing was read yet
		c.br = readerPool.Get().(*bufio.Reader)
		c.br.Reset(c.nc)
	}
	h := &h2Handler[C]{s: s, c: c}
	cfg := s.h2cfg
	cfg.OnReject = func(reason string, err error) { s.rejected(c.lc.Name, c.clientIP, "HTTP/2", reason, err) }
	cfg.OnRefusedHead = func(rh h2.RefusedHead) { s.logRefusedH2(c, rh) }
	cfg.OnFlood = func(reason string, err error) { s.flooded(c.lc.Name, c.clientIP, reason, err) }
	cfg.OnSlowClient = func(dir string) { s.slowClient(c.lc.Name, c.clientIP, "HTTP/2", dir) }
	conn := h2.NewConn(c.nc, c.br, cfg, h.serve)
	c.h2.Store(conn)
	if c.draining.Load() { // Shutdown may have looked before the Store
		conn.Shutdown()
	}
	conn.Serve()
}

// logRefusedH2 observes and logs an HTTP/2 request answered before a
// handler saw it (431 for a head over the limits), as rejectH1 does an
// HTTP/1.1 one: it had no access log line, though OnReject counted it.
func (s *Server[C]) logRefusedH2(c *clientConn, rh h2.RefusedHead) {
	req := &RequestHeader{Method: rh.Method, URI: normalizeURI(rh.Path), Host: rh.Authority, ProtoMajor: 2}
	sess := &Session{}
	sess.ClientIP, sess.TLS, sess.Listener = c.clientIP, c.tls, c.lc.Name
	sess.reset(context.Background(), req, answeredDownstream{})
	sess.Start, sess.Status = time.Now(), rh.Status
	perr := &Error{Kind: KindInvalidRequest, Source: Downstream, Status: rh.Status,
		Err: fmt.Errorf("%w (%s)", rh.Err, rh.Reason)}
	s.observe(sess, perr)
	s.logRejected(sess, perr)
}

// answeredDownstream is the downstream of a request the HTTP/2 server
// answered itself (logRefusedH2): its answer is sent, and there is
// nothing more to read or write.
type answeredDownstream struct{}

func (answeredDownstream) body(int64) (io.Reader, bool)    { return http.NoBody, false }
func (answeredDownstream) contentLength() int64            { return 0 }
func (answeredDownstream) trailer() http.Header            { return nil }
func (answeredDownstream) trailersFollow()                 {}
func (answeredDownstream) writeHead(*ResponseHeader) error { return errAnswered }
func (answeredDownstream) write([]byte) error              { return errAnswered }
func (answeredDownstream) blocked(int) bool                { return false }
func (answeredDownstream) flush() error                    { return nil }
func (answeredDownstream) finish(http.Header) error        { return nil }
func (answeredDownstream) started() bool                   { return true }
func (answeredDownstream) abort()                          {}
func (answeredDownstream) upgrade() string                 { return "" }
func (answeredDownstream) errorCloses(int) bool            { return false }
func (answeredDownstream) interruptBody()                  {}
func (answeredDownstream) resumeBody()                     {}

var errAnswered = errors.New("proxy: the request was already answered")

// h2Config maps the downstream limits onto the HTTP/2 server's.
func h2Config(d DownstreamConfig) h2.Config {
	return h2.Config{
		MaxConcurrentStreams: d.MaxConcurrentStreams,
		MaxHeaderListSize:    uint32(d.MaxHeaderBytes),
		MaxHeaders:           d.MaxHeaders,
		PrefaceTimeout:       d.HeaderTimeout,
		IdleTimeout:          d.KeepAliveTimeout,
		WriteTimeout:         d.WriteIdleTimeout,
		// A stream's wait for its request body is bounded like a tunnel,
		// not like an HTTP/1.1 body: gRPC streams stay open and idle for
		// long (x/net's server had no bound at all).
		StreamIdleTimeout: max(d.ReadIdleTimeout, d.TunnelIdleTimeout),
		// A response write whose window stays shut is a client that
		// stopped reading, bounded as on HTTP/1.1: it held its upstream
		// connection for the hour of TunnelIdleTimeout.
		StreamWriteTimeout: d.WriteIdleTimeout,
		DrainWait:          min(time.Second, d.DrainLinger),
		MinSendRate:        max(d.MinSendRate, 0),
		MinRecvRate:        max(d.MinRecvRate, 0),
		MinRateGrace:       d.MinRateGrace,
	}
}

type h2Handler[C any] struct {
	s *Server[C]
	c *clientConn
}

var sessionPool = sync.Pool{New: func() any { return new(h2Downstream) }}

// h2SessionPooled, when set (tests), runs when serve has put d, which
// served st, back in sessionPool: another stream may take it from then on.
var h2SessionPooled func(d *h2Downstream, st *h2.Stream)

func (h *h2Handler[C]) serve(st *h2.Stream) {
	sc, ok := h.s.perIPStream(h.c)
	if !ok {
		refuseStreamPerIP(st)
		return
	}
	defer h.s.endPerIPStream(h.c, sc)
	d := sessionPool.Get().(*h2Downstream)
	defer func() {
		// The reset hook is d's session's, which the pool may hand to
		// another stream at once: it goes first (the h2 server clears it
		// only once this has returned, too late).
		st.OnReset(nil)
		clear(d.hdr)
		clear(d.vals)
		*d = h2Downstream{sess: d.sess, abortUpstream: d.abortUpstream, hdr: d.hdr, vals: d.vals[:0]}
		sessionPool.Put(d)
		if h2SessionPooled != nil {
			h2SessionPooled(d, st)
		}
	}()
	d.st = st
	uri := normalizeURI(st.Path)
	if st.Method == http.MethodConnect {
		uri = st.Authority
	}
	d.rh = RequestHeader{Method: st.Method, URI: uri, Host: st.Authority, Header: st.Header, ProtoMajor: 2}
	if isGRPC(&d.rh) {
		// A gRPC stream moves at its application's pace both ways
		// (streaming calls idle, a slow consumer's backpressure): no
		// minimum rate is the client's network's to meet.
		st.NoMinRate()
	}
	if !h.c.trusted {
		dropForwarding(st.Header)
	}
	if d.sess == nil {
		d.sess = &Session{}
		d.abortUpstream = d.sess.abortUpstream
	}
	sess := d.sess
	sess.ClientIP, sess.TLS, sess.Listener = h.c.clientIP, h.c.tls, h.c.lc.Name
	sess.reset(st.Context(), &d.rh, d)
	if h.c.trusted {
		sess.ForwardedIP = forwardedClient(h.c.lc.TrustedProxies, st.Header)
	}
	// A client that resets the stream ends an upstream wait at once.
	st.OnReset(d.abortUpstream)
	h.s.handle(sess, time.Now())
}

// h2Downstream is the client side of one HTTP/2 stream.
type h2Downstream struct {
	sess *Session
	// abortUpstream is sess.abortUpstream, made once with sess: a method
	// value is an allocation each time it is taken.
	abortUpstream func()
	st            *h2.Stream
	rh            RequestHeader
	headSent      bool
	ended         bool // writeHeld sent the whole response
	in            io.Reader
	// hdr is the response head handed to the stream, which encodes it
	// lazily: a copy, keys and value slices (vals), as the upstream's
	// connection, map and slices included, may go back to its pool and
	// serve another response first. Both kept across requests by
	// sessionPool.
	hdr  http.Header
	vals []string
}

func (d *h2Downstream) body(limit int64) (io.Reader, bool) {
	if d.in == nil {
		d.in = d.st
		if limit > 0 {
			d.in = &limitReader{r: d.st, n: limit}
		}
	}
	return d.in, d.st.HasBody()
}

func (d *h2Downstream) contentLength() int64 {
	if !d.st.HasBody() {
		return 0
	}
	return d.st.ContentLength
}

func (d *h2Downstream) trailer() http.Header { return d.st.Trailer() }

func (d *h2Downstream) upgrade() string { return "" }

func (d *h2Downstream) started() bool { return d.headSent }

func (d *h2Downstream) errorCloses(int) bool { return false }

func (d *h2Downstream) interruptBody() { d.st.InterruptRead() }

func (d *h2Downstream) resumeBody() { d.st.ResumeRead() }

// trailersFollow: HTTP/2 carries trailers after any body.
func (d *h2Downstream) trailersFollow() {}

func (d *h2Downstream) writeHead(resp *ResponseHeader) error {
	if d.hdr == nil {
		d.hdr = make(http.Header, len(resp.Header))
	}
	h := d.hdr
	n := 0
	for _, v := range resp.Header {
		n += len(v)
	}
	if cap(d.vals) < n {
		d.vals = make([]string, 0, n)
	}
	vals := d.vals[:n]
	i := 0
	for k, v := range resp.Header {
		j := i + copy(vals[i:], v)
		h[k] = vals[i:j:j]
		i = j
	}
	if v := h["Content-Length"]; len(v) > 0 {
		// A 204 or 1xx must not carry one at all (RFC 9110 section 8.6):
		// HTTP/2 clients reset the stream. A 304's, the length of the
		// representation it validates, stays.
		st := resp.Status
		if _, err := strconv.ParseUint(v[0], 10, 63); err != nil || len(v) > 1 || st == http.StatusNoContent || st < 200 {
			delete(h, "Content-Length")
		}
	}
	d.headSent = true
	return d.st.WriteHead(resp.Status, h)
}

func (d *h2Downstream) write(p []byte) error { return d.st.Write(p) }

// writeHeld sends the head and a body held in memory (see heldWriter) and
// ends the stream: the last block's last DATA frame carries END_STREAM,
// so a hit is one write (a gathered one on plain TCP, h2.BuffersWriter)
// rather than its body and then an empty DATA frame. finish then has
// nothing left to do.
func (d *h2Downstream) writeHeld(resp *ResponseHeader, blocks [][]byte) error {
	if err := d.writeHead(resp); err != nil {
		return err
	}
	d.ended = true
	return d.st.End(blocks...)
}

func (d *h2Downstream) blocked(n int) bool { return d.st.Window() < n }

func (d *h2Downstream) flush() error { return d.st.Flush() }

func (d *h2Downstream) finish(trailer http.Header) error {
	if d.ended {
		return nil // writeHeld ended the stream
	}
	return d.st.Finish(trailer)
}

// abort resets the stream: the client sees the response end in error
// rather than a truncated body that looks complete.
func (d *h2Downstream) abort() {
	if d.headSent {
		d.st.Reset()
	}
}

// limitReader fails with a body-too-large error past n bytes.
type limitReader struct {
	r io.Reader
	n int64
}

var errBodyTooLarge = &Error{Kind: KindBodyTooLarge, Source: Downstream, Err: errors.New("request body over limit")}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, errBodyTooLarge
	}
	return n, err
}

// refuseStreamPerIP answers a stream over the client address's
// max_conns_per_ip 503, as nginx answers a request over limit_conn: not
// a REFUSED_STREAM, which clients retry at once.
func refuseStreamPerIP(st *h2.Stream) {
	st.WriteHead(http.StatusServiceUnavailable, http.Header{
		"Content-Type": {"text/plain; charset=utf-8"}, "Retry-After": {"1"}, "X-Content-Type-Options": {"nosniff"}})
	st.Write([]byte("503 Service Unavailable\n"))
	st.Finish(nil)
}
