package proxy

import "github.com/pingora-go/pingora-go/proxy/cache"

// App is what a user implements to build a proxy, Pingora's ProxyHttp in Go
// shape. Only UpstreamPeer is required; every other phase is an optional
// one-method interface below, discovered once when the Server is built. A
// phase that is not implemented takes the default described on it.
//
// C is the per-request context type: NewCtx makes one per request and every
// phase of that request receives it. Use a pointer type to keep state
// between phases.
type App[C any] interface {
	// NewCtx returns the context of a new request.
	NewCtx() C
	// UpstreamPeer chooses the peer to send the request to. It runs once per
	// attempt: again after a retryable failure, with Session.Tried listing
	// the peers already tried. An error fails the request (FailToProxy).
	UpstreamPeer(s *Session, ctx C) (*Peer, error)
}

// EarlyRequestFilter runs first, right after the request head was read and
// before anything else looks at it. It may change s.Req. An error fails the
// request. Absent: nothing happens.
type EarlyRequestFilter[C any] interface {
	EarlyRequestFilter(s *Session, ctx C) error
}

// RequestFilter runs after EarlyRequestFilter. It may change s.Req, set
// s.MaxBodyBytes, s.MaxRetries and s.Route, or answer the request itself
// with s.Respond and return handled=true, in which case no upstream is
// contacted. An error fails the request. Absent: the request goes on.
type RequestFilter[C any] interface {
	RequestFilter(s *Session, ctx C) (handled bool, err error)
}

// RequestCacheFilter runs after RequestFilter and decides whether the
// request may use the cache: it may set s.Cache to the settings to use, or
// to nil to bypass the cache (s.Cache is shared with other requests: set a
// copy rather than change it). Absent: s.Cache as Router (from the route's
// RouteConfig.Cache) or a RequestFilter set it; nil means no caching.
type RequestCacheFilter[C any] interface {
	RequestCacheFilter(s *Session, ctx C) error
}

// CacheKey returns the primary cache key of a request that uses the cache.
// It also runs for each URI an unsafe request invalidates (RFC 9111 §4.4),
// with s.Req set to a GET of that URI. An error fails the request. Absent:
// DefaultCacheKey(s).
type CacheKey[C any] interface {
	CacheKey(s *Session, ctx C) (string, error)
}

// CacheHitFilter runs when a stored response was found for the request,
// before its freshness is judged; miss=true ignores it, as if nothing was
// stored (the request goes to the origin, whose response replaces it). An
// error fails the request. Absent: stored responses are used.
type CacheHitFilter[C any] interface {
	CacheHitFilter(s *Session, meta *cache.Meta, ctx C) (miss bool, err error)
}

// ResponseCacheFilter decides whether an upstream response the cache would
// fill may be stored, and for how long: d is the engine's RFC 9111
// decision (cache.Decide), and the filter returns the one to apply. It may
// refuse a storable response, or store one the RFC would not, with the
// freshness it sets (a Vary: * response is never stored). It runs after
// UpstreamResponseFilter. An error fails the request. Absent: d applies.
type ResponseCacheFilter[C any] interface {
	ResponseCacheFilter(s *Session, resp *ResponseHeader, ctx C, d cache.Decision) (cache.Decision, error)
}

// UpstreamRequestFilter runs once per attempt, after the peer was chosen and
// before the connection is made (so it also runs for an attempt whose
// connect then fails). req is this attempt's copy of the request,
// already stripped of hop-by-hop headers and carrying X-Forwarded-*; the
// filter may change any of it (method, URI, Host, headers). Absent: req is
// sent as is.
type UpstreamRequestFilter[C any] interface {
	UpstreamRequestFilter(s *Session, req *RequestHeader, ctx C) error
}

// UpstreamResponseFilter runs when the upstream response head arrived, before
// ResponseFilter. It may change resp. Absent: nothing happens.
type UpstreamResponseFilter[C any] interface {
	UpstreamResponseFilter(s *Session, resp *ResponseHeader, ctx C) error
}

// ResponseFilter runs just before the response head is sent to the client,
// also for responses made by s.Respond. It may change resp. If a body
// filter changes the body length, delete Content-Length here. Absent:
// nothing happens.
type ResponseFilter[C any] interface {
	ResponseFilter(s *Session, resp *ResponseHeader, ctx C) error
}

// ResponseBodyFilter sees the response body as it streams, one chunk at a
// time, and returns what to send instead (it may return chunk itself, a
// different slice, or nil to send nothing). end is true once, with the last
// (possibly empty) chunk. The chunk's memory is reused after the call.
// Absent: the body passes through unchanged.
type ResponseBodyFilter[C any] interface {
	ResponseBodyFilter(s *Session, chunk []byte, end bool, ctx C) ([]byte, error)
}

// FailToConnect runs when connecting to peer failed (TCP or TLS). It returns
// the error to go on with; setting Retry on it asks for another attempt
// (UpstreamPeer runs again) within the retry budget. Absent: connect
// failures are retried.
type FailToConnect[C any] interface {
	FailToConnect(s *Session, peer *Peer, ctx C, err *Error) *Error
}

// ErrorWhileProxy runs when an error happened after the connection was made
// (sending the request, or reading the response head). It returns the error
// to go on with, and may set or clear Retry. The engine never retries once
// the client has received a byte, whatever Retry says. Absent: only a reset
// of a reused connection before any response byte is retried.
type ErrorWhileProxy[C any] interface {
	ErrorWhileProxy(s *Session, peer *Peer, ctx C, err *Error) *Error
}

// HasOtherPeer runs when a request's peer is at its ConnLimit (Peer.Conns)
// and another attempt is allowed: it reports whether UpstreamPeer would
// give that attempt a peer of another identity than peer and those in
// s.Tried. false keeps the request on peer, in its queue, on this attempt:
// no retry is spent to come back to the same peer, and nothing counts as
// failed over. It must not change s. Absent: the request fails over
// (UpstreamPeer sees peer in s.Tried), and waits on the peer it gets
// then. RouterApp implements it.
type HasOtherPeer[C any] interface {
	HasOtherPeer(s *Session, peer *Peer, ctx C) bool
}

// FailToProxy runs when the request failed. If nothing has been sent to the
// client yet it may write its own error page with s.Respond; it returns the
// status the client got (for logs and metrics). Absent, or when it writes
// nothing: the engine answers StatusFor(err) with a short plain-text body.
// It does not run when a phase panicked: the engine answers 500 itself.
type FailToProxy[C any] interface {
	FailToProxy(s *Session, ctx C, err error) int
}

// Logging runs exactly once per request, last, whether it succeeded, failed
// or was answered by a filter; err is the request's error or nil (one
// wrapping ErrPanic when a phase panicked).
type Logging[C any] interface {
	Logging(s *Session, ctx C, err error)
}

// phases is the set of optional phases an App implements, resolved once.
type phases[C any] struct {
	early        EarlyRequestFilter[C]
	request      RequestFilter[C]
	reqCache     RequestCacheFilter[C]
	cacheKey     CacheKey[C]
	cacheHit     CacheHitFilter[C]
	respCache    ResponseCacheFilter[C]
	upRequest    UpstreamRequestFilter[C]
	upResponse   UpstreamResponseFilter[C]
	response     ResponseFilter[C]
	responseBody ResponseBodyFilter[C]
	failConnect  FailToConnect[C]
	errProxy     ErrorWhileProxy[C]
	otherPeer    HasOtherPeer[C]
	failProxy    FailToProxy[C]
	logging      Logging[C]
}

func resolvePhases[C any](app App[C]) phases[C] {
	var p phases[C]
	p.early, _ = app.(EarlyRequestFilter[C])
	p.request, _ = app.(RequestFilter[C])
	p.reqCache, _ = app.(RequestCacheFilter[C])
	p.cacheKey, _ = app.(CacheKey[C])
	p.cacheHit, _ = app.(CacheHitFilter[C])
	p.respCache, _ = app.(ResponseCacheFilter[C])
	p.upRequest, _ = app.(UpstreamRequestFilter[C])
	p.upResponse, _ = app.(UpstreamResponseFilter[C])
	p.response, _ = app.(ResponseFilter[C])
	p.responseBody, _ = app.(ResponseBodyFilter[C])
	p.failConnect, _ = app.(FailToConnect[C])
	p.errProxy, _ = app.(ErrorWhileProxy[C])
	p.otherPeer, _ = app.(HasOtherPeer[C])
	p.failProxy, _ = app.(FailToProxy[C])
	p.logging, _ = app.(Logging[C])
	return p
}
