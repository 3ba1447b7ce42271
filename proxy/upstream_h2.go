package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/pingora-go/pingora-go/proxy/h1"
)

// h2Upstream holds one HTTP/2 transport per peer identity (address,
// protocol, TLS settings); each multiplexes requests over its connections.
// Only peers of the live table keep a transport (see PeerWatcher).
type h2Upstream struct {
	dialer *dialer
	cfg    Config

	mu         sync.Mutex
	transports map[string]*h2Transport
	live       peerKeys // the keys transports are kept for (nil: all)
}

// h2Transport is a peer's transport; dropped is set once it is no longer
// kept, so that each request ending on it closes its idle connections.
type h2Transport struct {
	*http2.Transport
	dropped atomic.Bool
}

func newH2Upstream(d *dialer, cfg Config) *h2Upstream {
	return &h2Upstream{dialer: d, cfg: cfg, transports: map[string]*h2Transport{}}
}

type dialMarkKey struct{}

// dialMark carries, for one request, the peer to dial (the request's, as a
// transport outlives the table whose Peer made it) and records whether its
// attempt dialed a new connection and how long the connect took.
type dialMark struct {
	peer    *Peer
	dialed  bool
	connect time.Duration
}

// transport returns the transport for peer's identity. A peer no live
// table uses (a request of an older table) gets one of its own, not kept,
// whose connection closes when the request ends (see done), or at the
// latest a second after.
func (u *h2Upstream) transport(peer *Peer) *h2Transport {
	key := peer.poolKey()
	u.mu.Lock()
	defer u.mu.Unlock()
	if t := u.transports[key]; t != nil {
		return t
	}
	if !u.live.has(key) {
		t := &h2Transport{Transport: u.newTransport(peer, min(u.cfg.Pool.IdleTimeout, oneRequestIdle))}
		t.dropped.Store(true)
		return t
	}
	t := &h2Transport{Transport: u.newTransport(peer, u.cfg.Pool.IdleTimeout)}
	u.transports[key] = t
	return t
}

// oneRequestIdle is the idle timeout of a transport made for one request.
// It is not shorter because it also runs between the dial and the
// request's claim on the new connection: a timeout that can pass in
// between makes the transport close the connection and dial again.
const oneRequestIdle = time.Second

// maxUpstreamHeadBytes caps an upstream's response head, over HTTP/1.1
// (the head's bytes) and HTTP/2 (its decoded size, RFC 9113 6.5.2: each
// field's name and value plus 32), so that an HTTP/2 origin cannot hand
// the proxy, and the client, the transport's default of 10 MiB per
// response in flight.
const maxUpstreamHeadBytes = 256 << 10

// maxUpstreamStreamWindow is the receive window of an HTTP/2 upstream
// stream: the most of a response body the transport holds for a client
// that does not drain it. The transport grants the origin more only as
// the proxy reads the body, and the proxy reads only as the client takes
// it, so it is the stream's buffer, with backpressure to the origin. The
// transport's default was 4 MiB: 200 streams whose clients read nothing
// held 804 MiB of heap, now 209 MiB. 1 MiB is what x/net's own server
// and the proxy's downstream side (h2.Config.StreamWindow) give a
// stream, near Kestrel's 768 KiB and Envoy's 1 MiB buffer limit per
// connection; one fast download of 100 MiB on loopback runs as fast as
// with 4 MiB, where 256 KiB cost it a third.
const maxUpstreamStreamWindow = 1 << 20

// maxUpstreamConnWindow is an HTTP/2 upstream connection's receive
// window: the most the transport holds over all its streams (its default
// was 1 GiB). It is not smaller because streams share it: an origin's
// connection carries many clients' streams, and once the streams of
// clients that stopped reading fill the window, the others on the
// connection stall too. 256 streams of maxUpstreamStreamWindow fit, more
// than the 250 a Go server, or the 128 nginx, lets a connection carry.
const maxUpstreamConnWindow = 256 << 20

func (u *h2Upstream) newTransport(first *Peer, idle time.Duration) *http2.Transport {
	// The receive windows are set only through a net/http Transport's
	// HTTP2 config, which the HTTP/2 transport reads when
	// ConfigureTransports links the two; t1 carries nothing else and
	// sends no request. ConfigureTransports gives the HTTP/2 transport a
	// pool that leaves dialing to t1: nil restores its own, which dials
	// with DialTLSContext.
	t1 := &http.Transport{HTTP2: &http.HTTP2Config{
		MaxReceiveBufferPerStream:     int(maxUpstreamStreamWindow),
		MaxReceiveBufferPerConnection: int(maxUpstreamConnWindow),
	}}
	t, err := http2.ConfigureTransports(t1)
	if err != nil {
		// It fails only for a t1 already configured for HTTP/2.
		panic("proxy: configuring the HTTP/2 upstream transport: " + err.Error())
	}
	t.ConnPool = nil
	t.AllowHTTP = first.Protocol == H2C
	t.ReadIdleTimeout = 30 * time.Second
	t.PingTimeout = 15 * time.Second
	t.IdleConnTimeout = idle
	t.MaxHeaderListSize = maxUpstreamHeadBytes
	// The transport otherwise asks for gzip on a request that names no
	// Accept-Encoding and decodes the answer: the origin saw a request
	// the client did not send, and the client got the identity body
	// under the gzip representation's ETag, without Content-Length,
	// with the proxy decompressing (a gzip bomb: 1000x) for it.
	t.DisableCompression = true
	// A connection whose writes make no progress this long is closed.
	// Without it, an origin that stops reading while it sends PINGs
	// (or SETTINGS) blocked the transport's reader in writing the
	// acknowledgement while it held the connection's write lock: no
	// timeout could reset the stream, and every request on the
	// connection waited forever. The first peer's value is the
	// transport's (a transport lives as long as the peer's identity).
	t.WriteByteTimeout = first.Timeouts.withDefaults(u.cfg.Upstream).WriteIdle
	t.DialTLSContext = func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
		return u.dial(ctx, first)
	}
	return t
}

// dial opens a connection for a transport made for first: to the
// request's peer (the context's dialMark), or first.
func (u *h2Upstream) dial(ctx context.Context, first *Peer) (net.Conn, error) {
	start := time.Now()
	m, _ := ctx.Value(dialMarkKey{}).(*dialMark)
	p := first
	if m != nil && m.peer != nil {
		p = m.peer
	}
	nc, err := u.dialer.dial(ctx, p, p.Timeouts.withDefaults(u.cfg.Upstream), "h2")
	if err != nil {
		return nil, err
	}
	u.dialer.metrics.connsCreated.Inc()
	if m != nil {
		m.dialed, m.connect = true, time.Since(start)
	}
	return guardH2(nc), nil
}

// done is called when a request on t ended: a transport that is not kept
// (any more) closes its connections that are idle now. The transport
// forgets a finished stream a moment after the body's end, so a
// connection that was not idle yet closes after Pool.IdleTimeout at the
// latest.
func (t *h2Transport) done() {
	if t.dropped.Load() {
		t.CloseIdleConnections()
	}
}

// retain keeps transports only for keys in live; the others close their
// idle connections and are dropped (requests in flight on them finish).
func (u *h2Upstream) retain(live peerKeys) {
	var dropped []*h2Transport
	u.mu.Lock()
	u.live = live
	for k, t := range u.transports {
		if !live.has(k) {
			t.dropped.Store(true)
			dropped = append(dropped, t)
			delete(u.transports, k)
		}
	}
	u.mu.Unlock()
	for _, t := range dropped {
		t.CloseIdleConnections()
	}
}

// count returns the number of transports kept.
func (u *h2Upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.transports)
}

func (u *h2Upstream) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, t := range u.transports {
		t.CloseIdleConnections()
	}
}

// timeoutError is a timeout reported by a timer rather than a deadline; it
// satisfies net.Error so isTimeout classifies it.
type timeoutError string

func (e timeoutError) Error() string   { return string(e) }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }

var (
	errResponseHeaderTimeout error = timeoutError("proxy: upstream response header timeout")
	errReadIdleTimeout       error = timeoutError("proxy: upstream read idle timeout")
	// errNotTaken ends an attempt the transport would take again by itself:
	// the upstream did not process the request (REFUSED_STREAM, a GOAWAY
	// below its stream, a connection that closed as it was picked).
	errNotTaken = errors.New("proxy: HTTP/2 upstream did not take the request")
)

// h2Exchange is one request/response on an HTTP/2 upstream stream.
type h2Exchange struct {
	tr     *h2Transport
	ctx    context.Context
	res    *http.Response
	cancel context.CancelCauseFunc
	timer  *time.Timer
	idle   time.Duration
	body   *attemptBody
	got    int64      // body bytes read
	slot   *peerSlots // the peer's stream slot (see ConnLimit; nil: uncapped)
}

func (s *Server[C]) h2RoundTrip(sess *Session, peer *Peer, req *RequestHeader, body *reqBody, out *ResponseHeader) (*h2Exchange, error) {
	// The Transport checks field names and values for controls, but sends
	// a method or :path with a space, and values with edge whitespace: an
	// HTTP/2 upstream that downgrades would meet what h1 refuses to write.
	if err := h1.CheckRequestHead(req.Method, req.URI, req.Host, req.Header); err != nil {
		return nil, unwritable(err)
	}
	t := peer.Timeouts.withDefaults(s.cfg.Upstream)
	mark := &dialMark{peer: peer}
	ctx, cancel := context.WithCancelCause(context.WithValue(sess.ctx, dialMarkKey{}, mark))
	// The transport takes a request the upstream did not process again,
	// on the same peer, up to 6 times with a backoff of 1, 2, 4... s, when
	// it has no body: a peer answering REFUSED_STREAM (HTTP/2's "not
	// processed, try elsewhere") held each GET until the response header
	// timeout (504), never failed over, and got each request 4 times more.
	// The transport's second connection pick is such a retry: it ends
	// the attempt, which the proxy's retry policy takes to the next peer.
	var picks atomic.Int32
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) {
		if picks.Add(1) > 1 {
			cancel(errNotTaken)
		}
	}})
	timer := time.AfterFunc(t.ResponseHeader, func() { cancel(errResponseHeaderTimeout) })
	hr := &http.Request{
		Method:     req.Method,
		URL:        h2URL(peer, req.URI),
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Host:       req.Host,
		Body:       http.NoBody,
	}
	tr := s.h2up.transport(peer)
	ex := &h2Exchange{tr: tr, cancel: cancel, timer: timer, idle: t.ReadIdle}
	if body.has {
		ex.body = &attemptBody{b: body, trailer: declaredTrailers(req.Header), ds: sess.ds}
		body.handed = true // the transport may read it at any time from now
		hr.Body, hr.ContentLength, hr.Trailer = ex.body, sess.ds.contentLength(), ex.body.trailer
		if hr.ContentLength < 0 {
			hr.ContentLength = -1
		}
	}
	delete(req.Header, "Content-Length")
	delete(req.Header, "Transfer-Encoding")
	hr.Header = req.Header
	res, err := tr.RoundTrip(hr.WithContext(ctx))
	timer.Stop()
	sess.ConnReused, sess.ConnectTime = !mark.dialed, mark.connect
	if err != nil {
		// The transport's writer may still read the header after
		// RoundTrip returned an error (a cancelled attempt, above, or a
		// timeout) while the next attempt rebuilds req.Header: the map
		// stays with it, and the session goes on with a copy. Only a
		// failed attempt pays for the copy.
		req.Header = req.Header.Clone()
		ex.release(false)
		return nil, h2Error(err, context.Cause(ctx))
	}
	if !mark.dialed {
		s.metrics.connsReused.Inc()
	}
	if !threeDigitStatus(res.Status) {
		// The transport takes any integer; an HTTP/1.1 origin's status
		// must be three digits (h1.ReadResponse), and so must this one's.
		res.Body.Close()
		ex.release(false)
		return nil, &Error{Kind: KindProtocol, Source: Upstream, Err: fmt.Errorf("proxy: invalid :status %q from HTTP/2 upstream", res.Status)}
	}
	ex.res = res
	ex.ctx = ctx
	ex.timer = time.AfterFunc(t.ReadIdle, func() { cancel(errReadIdleTimeout) })
	out.Status, out.Header = res.StatusCode, res.Header
	if len(res.Trailer) > 0 {
		out.Header["Trailer"] = []string{trailerKeys(res.Trailer)}
	}
	return ex, nil
}

// threeDigitStatus reports whether status (the transport's Status: the
// :status value, a space, the reason) starts with three digits, 100-999.
func threeDigitStatus(status string) bool {
	if len(status) < 4 || status[3] != ' ' || status[0] < '1' || status[0] > '9' {
		return false
	}
	return status[1] >= '0' && status[1] <= '9' && status[2] >= '0' && status[2] <= '9'
}

// declaredTrailers returns a map with the trailer names the request
// announced, values to be filled at the body's end: HTTP/2 servers drop
// trailers that were not announced in the head.
func declaredTrailers(h http.Header) http.Header {
	t := http.Header{}
	for _, v := range h["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				t[http.CanonicalHeaderKey(k)] = nil
			}
		}
	}
	delete(h, "Trailer")
	return t
}

func h2URL(peer *Peer, uri string) *url.URL {
	u := &url.URL{Scheme: "https", Host: peer.Addr}
	if peer.Protocol == H2C {
		u.Scheme = "http"
	}
	path, query, _ := strings.Cut(uri, "?")
	u.RawQuery = query
	if strings.HasPrefix(path, "//") || path == "" || path[0] != '/' {
		if path == "*" {
			u.Opaque = "*"
		} else {
			u.Path = path
		}
	} else {
		u.Opaque = path
	}
	return u
}

func trailerKeys(t http.Header) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	return strings.Join(keys, ", ")
}

// h2Error classifies a RoundTrip failure. cause is the context's cause
// (our timeouts), which the transport reports only as "context canceled".
func h2Error(err, cause error) error {
	switch {
	case errors.Is(cause, errResponseHeaderTimeout):
		return newError(KindReadTimeout, Upstream, cause)
	case errors.Is(cause, errNotTaken):
		return &Error{Kind: KindProtocol, Source: Upstream, Retry: true, Err: fmt.Errorf("%w: %v", cause, err)}
	case errors.Is(err, errAttemptOver):
		return &Error{Kind: KindInternal, Source: Internal, Err: err}
	case errors.Is(err, errHeaderBlockFlood):
		return &Error{Kind: KindProtocol, Source: Upstream, Err: err}
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	if cause != nil && errors.Is(err, context.Canceled) {
		return newError(KindClientCanceled, Downstream, err)
	}
	var se http2.StreamError
	if errors.As(err, &se) {
		// REFUSED_STREAM means the peer did not process it: safe to retry.
		return &Error{Kind: KindProtocol, Source: Upstream, Retry: se.Code == http2.ErrCodeRefusedStream, Err: err}
	}
	return &Error{Kind: KindConnectionClosed, Source: Upstream, Retry: true, Err: err}
}

func (ex *h2Exchange) read(p []byte) (int, error) {
	ex.timer.Reset(ex.idle)
	n, err := ex.res.Body.Read(p)
	ex.got += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		if c := context.Cause(ex.ctx); errors.Is(c, errReadIdleTimeout) {
			err = c
		}
	}
	return n, err
}

func (ex *h2Exchange) buffered() int { return 0 }

// ahead: a body with a declared length whose rest fits in room; once all
// of it was read, the next read returns io.EOF as soon as the stream ends.
func (ex *h2Exchange) ahead(room int) bool {
	cl := ex.res.ContentLength
	return cl >= 0 && cl-ex.got <= int64(room)
}

func (ex *h2Exchange) trailer() http.Header {
	if ex.res == nil {
		return nil
	}
	return ex.res.Trailer
}

// stopBody: see exchange. A stream answered with a status over 299 (all
// that are retried) goes on after its body stops: the transport stopped
// sending it already (abortRequestBodyWrite).
func (ex *h2Exchange) stopBody() {
	if ex.body != nil {
		ex.body.stop()
	}
}

// release ends the stream; a stream not read to its end is reset, which
// the upstream sees as RST_STREAM (CANCEL). The request body's reads stop
// first: the transport's Close waits for its body writer, which may be
// waiting for a client that stopped sending (see attemptBody.stop).
func (ex *h2Exchange) release(ok bool) {
	if ex.timer != nil {
		ex.timer.Stop()
	}
	if ex.body != nil {
		ex.body.stop()
	}
	if ex.res != nil {
		ex.res.Body.Close()
		ex.res = nil
	}
	ex.cancel(nil)
	if ex.tr != nil {
		ex.tr.done()
		ex.tr = nil
	}
	if ex.slot != nil {
		ex.slot.release()
		ex.slot = nil
	}
}
