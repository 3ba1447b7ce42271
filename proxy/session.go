package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/proxy/health"
	"github.com/pingora-go/pingora-go/proxy/route"
)

// RequestHeader is a request head as the phases see it.
type RequestHeader struct {
	Method string
	// URI is the request target in origin form: path and query. The
	// downstream normalises the path of the client's target with
	// route.CleanPath (unreserved characters decoded, dot segments removed,
	// slashes merged), so routing, limits, the cache key and the upstream
	// all see the same path; the query is as the client sent it.
	URI string
	// Host is the authority (Host header or HTTP/2 :authority).
	Host string
	// Header holds the fields. Host is not among them: it is the Host field
	// above. Keys are canonical (textproto.CanonicalMIMEHeaderKey).
	Header http.Header
	// ProtoMajor and ProtoMinor are the client's protocol version.
	ProtoMajor, ProtoMinor int
}

// Path returns the path of URI (before any '?').
func (r *RequestHeader) Path() string {
	if i := strings.IndexByte(r.URI, '?'); i >= 0 {
		return r.URI[:i]
	}
	return r.URI
}

// normalizeURI returns uri with its path normalised by route.CleanPath and
// its query as is. A target not starting with '/' ("*", a CONNECT
// authority) is returned as is, and so is one already normal, without
// allocating.
func normalizeURI(uri string) string {
	if uri == "" || uri[0] != '/' {
		return uri
	}
	p, q := uri, ""
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		p, q = uri[:i], uri[i:]
	}
	c := route.CleanPath(p)
	if c == p {
		return uri
	}
	return c + q
}

// Query returns the raw query of URI, without the '?'.
func (r *RequestHeader) Query() string {
	if i := strings.IndexByte(r.URI, '?'); i >= 0 {
		return r.URI[i+1:]
	}
	return ""
}

// ResponseHeader is a response head as the phases see it.
//
// A phase may keep its field values (strings), not the ResponseHeader,
// its Header map or the map's value slices past the call it got them in:
// an HTTP/1.1 upstream response's head is its connection's, which goes
// back to the pool once the body has been read (before the body's last
// chunk reaches ResponseBodyFilter, and before Logging) and reads the
// next response, another request's, into the same map and slices. Copy
// what a later phase needs (Header.Get, Header.Clone).
type ResponseHeader struct {
	Status int
	Header http.Header
}

// Session is one request as it passes through the phases. Fields a phase may
// set are marked; the rest are for reading. A Session must not be kept after
// the Logging phase returns: the engine reuses it.
type Session struct {
	// Req is the client's request head. Early and request filters may change it.
	Req *RequestHeader
	// ClientIP is the client's address without port: the connection's
	// peer. Behind a trusted proxy that is the proxy; see RealIP.
	ClientIP string
	// ForwardedIP is, when the peer is one of the listener's trusted
	// proxies, the client those proxies report: the rightmost address of
	// X-Forwarded-For outside the trusted networks. "" otherwise.
	ForwardedIP string
	// TLS is the client connection's TLS state, or nil for cleartext.
	TLS *tls.ConnectionState
	// Listener is the name of the listener the request came in on.
	Listener string

	// Route labels the request in metrics and logs (set by a phase; default "").
	Route string
	// MaxBodyBytes caps the request body, 0 for no cap (set by a phase;
	// defaults to Config.Downstream.MaxBodyBytes).
	MaxBodyBytes int64
	// MaxRetries caps the extra attempts after retryable failures (set by a
	// phase; defaults to Config.Retries).
	MaxRetries int
	// RetryTimeout stops new attempts once this long has passed since Start
	// (set by a phase; default 0: no time bound beyond MaxRetries).
	RetryTimeout time.Duration
	// RetryOnStatus lists upstream statuses retried on another peer while
	// attempts remain (set by a phase; default none).
	RetryOnStatus []int
	// ReplayBufferBytes is how much of the request body is kept for a replay
	// (set by a phase before the body is read; default 64 KiB).
	ReplayBufferBytes int
	// Upgrades lists the protocols an HTTP/1.1 client's Upgrade may switch
	// the connection to, by name without case (set by a phase; Router sets
	// the route's; default [websocket]). An Upgrade to any other protocol
	// is served as a plain request, its upgrade fields removed, as nginx
	// does. h2c, h2 and HTTP are never tunnelled, whatever the list says.
	// Only HTTP/1.1 upstreams are upgraded.
	Upgrades []string
	// Cache is the request's cache settings: nil bypasses the cache (set
	// by a phase up to RequestCacheFilter; Router sets the route's
	// RouteConfig.Cache; default nil). It is shared with other requests:
	// replace it, never change it.
	Cache *CacheConfig

	// Peer is the peer of the current or last attempt.
	Peer *Peer
	// Tried lists the peers of failed attempts, oldest first.
	Tried []*Peer
	// Retries counts attempts after the first.
	Retries int
	// Status is the status sent to the client (0 if none was sent).
	Status int
	// BytesIn and BytesOut count request and response body bytes.
	BytesIn, BytesOut int64
	// Start is when the request head was read.
	Start time.Time
	// ConnectTime is how long the last upstream connect took (0 if reused).
	ConnectTime time.Duration
	// ConnReused reports that the last attempt used a pooled connection.
	ConnReused bool
	// UpstreamTTFB is the time from Start to the first upstream response byte.
	UpstreamTTFB time.Duration
	// Background is true for a request the cache made itself, to
	// revalidate a stale response in the background
	// (stale-while-revalidate); its response goes only to the cache.
	Background bool
	// CacheStatus says what the cache did, as the parameters of the
	// Cache-Status field (RFC 9211) without the cache's name, such as
	// "hit; ttl=42" or "fwd=miss; fwd-status=200; stored"; "" when the
	// request did not use the cache. It is set before Logging runs.
	CacheStatus string
	// TraceID is the request's trace ID (32 hex digits) when a Tracer is
	// set, so that log lines of one request on several proxies can be
	// joined; "" without one. The Tracer sets it.
	TraceID string

	ctx context.Context
	ds  downstream
	// upWait is the HTTP/1.1 upstream connection waiting for a response
	// head, cut by abortUpstream when the client leaves.
	upWait    atomic.Pointer[upConn]
	upReq     RequestHeader
	upgrade   string       // the Upgrade value sent to the upstream this attempt, "" if none
	fwdVals   [4][1]string // backing for the forwarding fields of upReq (see buildUpstreamRequest)
	upResp    ResponseHeader
	body      *reqBody
	match     routeMatch
	attempt   attemptTrack
	ex        exchange   // the last attempt's, released or not: a panic releases it (releaseAfterPanic)
	h1x       h1Exchange // the HTTP/1.1 attempts' exchange, one at a time (h1RoundTrip): not allocated per request
	openSpan  Span       // the attempt's or cache lookup's span under way: a panic leaves it to the end
	bodyRead  bool       // a byte of the request body was consumed
	responded bool
	hooks     sessionHooks
	uctx      any // the request's C, for hooks
	cache     cacheState
	cacheHead *cacheHead // kept across requests (see head)

	// limitPolicy and limitState are the RateLimit fields an admitted
	// request's response carries (see Limiter).
	limitPolicy, limitState string
}

// attemptTrack ties an attempt to the chosen peer's health record: the
// engine releases the in-flight count and reports the outcome.
type attemptTrack struct {
	rec     *health.Record
	passive health.Passive
}

// sessionHooks lets non-generic Session methods call the generic phases.
type sessionHooks interface {
	filterResponse(s *Session, resp *ResponseHeader) error
}

// Context returns the request's context: canceled when the client goes away
// or the server shuts down hard.
func (s *Session) Context() context.Context { return s.ctx }

// ErrResponseStarted is returned by Respond when a response head was already
// sent to the client.
var ErrResponseStarted = errors.New("proxy: response already started")

// Respond answers the request with status, header fields and body, and
// marks it handled. The ResponseFilter phase runs on it as on any response.
func (s *Session) Respond(status int, header http.Header, body []byte) error {
	if s.ds.started() {
		return ErrResponseStarted
	}
	if header == nil {
		header = make(http.Header, 2)
	}
	header.Set("Content-Length", strconv.Itoa(len(body)))
	resp := &ResponseHeader{Status: status, Header: header}
	s.responded = true
	if err := s.hooks.filterResponse(s, resp); err != nil {
		return err
	}
	if err := s.ds.writeHead(resp); err != nil {
		return err
	}
	s.Status = resp.Status
	if s.Req.Method != http.MethodHead && len(body) > 0 {
		if err := s.ds.write(body); err != nil {
			return err
		}
		s.BytesOut += int64(len(body))
	}
	return s.ds.finish(nil)
}

// reset prepares s for a new request, keeping its buffers.
func (s *Session) reset(ctx context.Context, req *RequestHeader, ds downstream) {
	s.Req, s.ctx, s.ds = req, ctx, ds
	s.upWait.Store(nil)
	s.Route, s.MaxBodyBytes, s.MaxRetries = "", 0, 0
	s.Peer, s.Tried, s.Retries, s.Status = nil, s.Tried[:0], 0, 0
	s.BytesIn, s.BytesOut = 0, 0
	s.ConnectTime, s.ConnReused, s.UpstreamTTFB = 0, false, 0
	s.bodyRead, s.responded, s.uctx, s.body, s.ex, s.openSpan = false, false, nil, nil, nil, nil
	s.h1x = h1Exchange{}
	s.match, s.attempt = routeMatch{}, attemptTrack{}
	s.RetryTimeout, s.RetryOnStatus, s.ReplayBufferBytes = 0, nil, replayLimit
	s.Upgrades, s.upgrade = defaultUpgrades, ""
	s.Cache, s.Background, s.CacheStatus, s.cache = nil, false, "", cacheState{}
	s.TraceID, s.ForwardedIP = "", ""
	s.limitPolicy, s.limitState = "", ""
	clear(s.Tried[:cap(s.Tried)])
}

// RealIP is the client the request is from: ForwardedIP when trusted
// proxies reported one, else ClientIP. Rate limits and client_ip hashing
// use it (nginx's realip module does the same with set_real_ip_from).
func (s *Session) RealIP() string {
	if s.ForwardedIP != "" {
		return s.ForwardedIP
	}
	return s.ClientIP
}

func (s *Session) scheme() string {
	if s.TLS != nil {
		return "https"
	}
	return "http"
}

// downstream is the client side of a request: HTTP/1.1 or HTTP/2.
type downstream interface {
	// body returns the request body reader, limited to limit bytes when
	// limit > 0 (reads return io.EOF at once when there is no body), and
	// whether the request has a body.
	body(limit int64) (io.Reader, bool)
	// contentLength is the declared body length, -1 if unknown.
	contentLength() int64
	// trailer returns the request trailers, valid after the body's EOF.
	trailer() http.Header
	// trailersFollow says, before writeHead, that the response body may
	// end with trailers though its head declares a Content-Length (an
	// HTTP/2 upstream's response that announces them): HTTP/1.1, which
	// carries trailers only in a chunked body, then drops the
	// Content-Length for a client that accepts trailers (TE: trailers).
	trailersFollow()
	// writeHead sends the response head; it chooses the body framing.
	writeHead(resp *ResponseHeader) error
	write(p []byte) error
	// blocked reports whether a write of n body bytes would wait for the
	// client now (an HTTP/2 flow-control window smaller than n); false
	// when it cannot tell (HTTP/1.1, where the kernel's buffers take a
	// small body).
	blocked(n int) bool
	flush() error
	// finish ends the response body, with trailers if any.
	finish(trailer http.Header) error
	// started reports whether any byte of the response head was sent.
	started() bool
	// abort ends the exchange abruptly after a failure mid-response.
	abort()
	// upgrade returns the protocol the client asks to upgrade to, or "".
	upgrade() string
	// errorCloses reports whether an error response with code must close
	// the connection.
	errorCloses(code int) bool
	// interruptBody wakes a request body read that waits for the client,
	// from any goroutine: it and the reads after it return an error that
	// says so (see interrupted) until resumeBody. An upstream that
	// answered before it took the whole body (a 413) must not have its
	// answer held until a client that stopped sending sends more or its
	// read times out (ReadIdleTimeout).
	interruptBody()
	// resumeBody ends interruptBody once the interrupted reader has
	// returned: the body reads on from where it stopped (to be drained,
	// or replayed to another peer).
	resumeBody()
}

// abortUpstream cuts an HTTP/1.1 upstream wait after the client left (the
// context is already canceled; the waiter also checks it after
// publishing itself, so one of the two always sees the other).
func (s *Session) abortUpstream() {
	// Swap, not Load: the waiter learns that this took its connection
	// (its CompareAndSwap fails) and never pools it, as the deadline below
	// may land after the response was read.
	if c := s.upWait.Swap(nil); c != nil {
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}
