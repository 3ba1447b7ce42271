// Package proxy is a programmable HTTP proxy in the spirit of Cloudflare
// Pingora: it serves HTTP/1.1 and HTTP/2 (TLS with ALPN, and h2c with prior
// knowledge on the same port as HTTP/1.1), terminates TLS with certificates
// chosen by SNI, and forwards each request to an upstream peer over pooled
// HTTP/1.1 connections or multiplexed HTTP/2 ones, running the request
// through phases a user implements.
//
// It imports none of the cluster packages (membership, consensus,
// sharedcache, ratelimit, node): a Go program can embed it alone. See
// Example for a complete gateway in about thirty lines.
//
// # Phases
//
// A user writes an App (NewCtx and UpstreamPeer) and, optionally, any of the
// one-method phase interfaces; New finds them once. A request goes:
//
//	request head read (HTTP/1.1 parsed strictly; smuggling shapes get 400)
//	  │
//	  ▼
//	EarlyRequestFilter ──► RequestFilter ──(handled: s.Respond)──────────┐
//	  │                                                                  │
//	  ▼                                                                  │
//	Config.Limiter ──(refused: 429 / RESOURCE_EXHAUSTED)─────────────────┤
//	  │ (delay: held, asked again)                                       │
//	  ▼                                                                  │
//	RequestCacheFilter ──► CacheKey ──► lookup ──► CacheHitFilter        │
//	  │        (when s.Cache is set)      │  (fresh, or stale as allowed:│
//	  │                                   │   served from the cache) ────┤
//	  ▼   (miss or stale: the cache lock; a waiter is served ────────────┤
//	  │    from the fill it waited on)                                   │
//	UpstreamPeer ◄──────────────── retry (FailToConnect /                │
//	  │                             ErrorWhileProxy set Retry, budget,    │
//	  ▼                             nothing sent to the client yet)      │
//	UpstreamRequestFilter ──► connect, send ──► response head            │
//	  │ (peer at its ConnLimit: retry if HasOtherPeer, else its queue)   │
//	  │                                                                  │
//	  ▼                                                                  │
//	UpstreamResponseFilter ──► ResponseCacheFilter (a fill: store it?)   │
//	  │                                                                  │
//	  ▼                                                                  │
//	ResponseFilter ◄─────────────────────────────────────────────────────┘
//	  │
//	  ▼
//	ResponseBodyFilter (per chunk, streaming; also on cached bodies;
//	  the body goes into the cache before this filter) ──► trailers
//	  │
//	  ▼
//	Logging (exactly once; also after FailToProxy wrote the error page)
//
// Each phase's documentation says when it runs, what it may change and what
// its absence means. The rate-limit hook is not a phase of the App but a
// Limiter in Config (see ExampleLimiter), so that a node can install its
// cluster limiter under any App. The per-request context C comes from App.NewCtx and is
// passed to every phase.
//
// A panic in a phase (or in the Limiter, the Tracer or a cache Store as
// they serve a request, background revalidations included) fails that
// request only, as a handler's panic does in net/http: the client gets a
// 500 when nothing was sent yet, else its response is cut (over HTTP/2 the
// stream is reset and the connection's other streams go on), and an
// HTTP/1.1 connection closes after it. FailToProxy does not run for it;
// Logging does, with an error wrapping ErrPanic. The panic is logged once
// at error level (Config.ErrorLog) with its stack and counted in
// pingora_panics_total; one with http.ErrAbortHandler aborts the request
// with no answer and is neither logged nor counted. A panic in Logging,
// after the response, is logged and counted, and changes nothing else.
// Goroutines an App starts itself are its own to guard.
//
// # HTTP semantics
//
// Requests are held to one grammar whatever their protocol (proxy/h1's):
// an HTTP/1.1 head that breaks it gets a 4xx, an HTTP/2 one RST_STREAM
// PROTOCOL_ERROR, before any phase runs, each counted in
// pingora_downstream_rejected_total{reason}; so an HTTP/2 request can never
// become an ambiguous HTTP/1.1 one upstream. An HTTP/2 connection whose
// frames are mostly overhead (PING, SETTINGS, empty DATA and the like) is
// closed with GOAWAY ENHANCE_YOUR_CALM and counted in
// pingora_downstream_floods_total{reason} (proxy/h2's flood.go). What a phase leaves in the
// upstream request is checked again when it is written: a method, target,
// Host or field that would not parse back fails the request with
// KindInvalidUpstreamRequest (500) and sends nothing.
//
// An HTTP/1.1 Upgrade is forwarded only for the protocols Session.Upgrades
// lists (websocket by default, RouteConfig.Upgrades per route), and only to
// HTTP/1.1 upstreams; any other is served as a plain request, as nginx
// does. h2c, h2 and HTTP are never tunnelled (h2c smuggling), and a 101 is
// followed only to a protocol that was offered.
//
// Hop-by-hop fields (Connection and the fields it names, Keep-Alive, TE
// except "trailers", Transfer-Encoding, Upgrade unless upgrading,
// HTTP2-Settings, Proxy-*) are removed both ways. X-Forwarded-For, -Proto
// and -Host are set to what this proxy saw (client address, scheme,
// Host/:authority): a client outside ListenerConfig.TrustedProxies has
// its forwarding fields (X-Forwarded-*, Forwarded, X-Real-IP) removed as
// the request arrives, so they reach neither the phases, the cache key
// nor the upstream; a trusted proxy's pass on, this proxy's values
// appended. Via is added when Config.Via is set. Bodies stream in both directions
// with bounded memory (32 KiB buffers; at most 64 KiB of a request body is
// kept for a replay), trailers pass through but for the fields RFC 9110
// §6.5.1 forbids there (dropForbiddenTrailers), and versions translate both
// ways (HTTP/1.1 chunked trailers to HTTP/2 trailers and back; an HTTP/2
// response with a Content-Length and trailers goes chunked to an HTTP/1.1
// client that sent "TE: trailers", else keeps its length and loses the
// trailers). The Trailer field announces trailers only to a client they
// reach: it goes from a response to an HTTP/1.1 client that is not
// chunked (and so to every HTTP/1.0 client), from an HTTP/1.1 upstream's
// response that is not chunked, and from a response served from the
// cache, which stores no trailers. On Linux a
// response body framed by Content-Length from an HTTP/1.1 upstream to an
// HTTP/1.1 client, both over plain TCP, moves with splice(2) when no body
// filter or cache fill needs to see it (Config.NoSplice turns it off). Failures
// answer 502 (upstream failed), 504 (upstream timed out), 503 (no healthy
// peer, or a peer at its ConnLimit) with a short plain-text body that
// names no upstream.
//
// A client that cannot take a response body's bytes now (an HTTP/2 client
// whose flow-control window is shut or too small) does not hold the
// upstream connection for a small response: when the rest of the body has
// a declared length within the 64 KiB relay buffer, or its chunked end has
// arrived, it is read first and the connection goes back to the pool
// before the proxy waits for the client (see readAhead). A client that
// reads gets the bytes as they come. Peer.Conns (ConnLimit, nginx's
// max_conns and queue) bounds the connections the rest can hold: large
// bodies to clients that do not read, slow upstreams.
//
// A client that reads, or sends its request body, only a trickle (an
// HTTP/2 window opened a byte at a time, a body sent a byte per idle
// timeout) is held to DownstreamConfig.MinSendRate and MinRecvRate (240
// bytes a second after a 5 s grace by default): only the time the proxy
// waits on the client counts, against the grace plus 1/rate for each byte
// moved. Under it, an HTTP/2 stream is reset with ENHANCE_YOUR_CALM, an
// HTTP/1.1 request body fails with 408 and its connection closes, and the
// upstream request is abandoned (pingora_downstream_slow_clients_total).
// An HTTP/1.1 response is counted at the socket (sendMeter, Linux): a
// write or splice that finds the send buffer full waits within the
// response's budget, bytes counting once the client acknowledged them;
// under it the connection closes. gRPC calls and tunnels are exempt. On
// other systems the response side of HTTP/1.1 is bounded only by
// WriteIdleTimeout.
//
// # HTTP cache
//
// A request whose Session.Cache is set (RouteConfig.Cache through Router,
// or a phase) uses the cache: RFC 9111 for a shared cache, with RFC 5861's
// stale-while-revalidate and stale-if-error and RFC 9211's Cache-Status
// response field ("pingora-go; hit; ttl=42", "pingora-go; fwd=miss;
// fwd-status=200; stored", "pingora-go; fwd=stale; fwd-status=304", ...).
// Responses live in a cache.Store: Config.CacheStore, by default a memory
// store of 256 MiB, or a route's CacheConfig.Store. The phases
// RequestCacheFilter, CacheKey, CacheHitFilter and ResponseCacheFilter
// change what it does. Every store call carries the request in its
// context (cache.RequestFrom), so a store whose fills happen elsewhere
// (the cluster tier, where a key's owner fetches it for every node) can
// send it along; the owner runs such a fill through its own phases with
// FillCache, as a background request whose response goes only into the
// fill.
//
// Concurrent misses on one key are collapsed: one request fills the key
// (its response streams to its client and into the store at once) and the
// others wait on the key's lock for the fill's head, then read the same
// body as it streams. A waiter gives up after CacheConfig.LockTimeout and
// goes to the origin itself, uncached. A fill that fails before its head,
// or whose response may not be stored, releases its waiters at once, and
// each goes to the origin itself, uncached (no second lock round, so a
// failing origin is never waited on twice); a fill that fails mid-body
// cuts the responses reading it (never a short body presented as
// complete) and stores nothing. A body that grows past
// CacheConfig.MaxObjectBytes streams through whole to every reader and is
// not stored. A fill whose own client leaves goes on for the others.
//
// GET responses are stored; a HEAD is answered from a stored GET; a single
// Range from a stored full response (206, or 416), several ranges go to
// the origin, and a Range that misses goes to the origin as sent (its 206
// is never stored as a full response). A client's If-None-Match or
// If-Modified-Since is answered 304 from a stored response, and kept from
// the origin when the request fills the key. Stale responses are
// revalidated with If-None-Match / If-Modified-Since and a 304 refreshes
// the stored head (§4.3.4). A successful unsafe request (POST, PUT, DELETE,
// PATCH, ...) invalidates its target URI and same-origin Location and
// Content-Location (§4.4). Trailers are not stored. A response that sets a
// cookie is not stored unless a ResponseCacheFilter says so.
//
// # Tracing
//
// Config.Tracer, when set, is told of each request (SpanRequest), each
// upstream attempt (SpanAttempt) and each cache lookup (SpanCacheLookup),
// and writes the trace context the upstream continues into the attempt's
// request (W3C traceparent and tracestate, replacing the client's). The
// request's context (Session.Context) carries the request span, so a
// phase or a cache store can add spans under it; Session.TraceID names
// the trace in the access log ("trace_id"). proxy imports no tracing
// library: pingora-node plugs OpenTelemetry in (node/tracing.go). Without
// a Tracer the client's trace fields pass through unchanged and a request
// costs not one allocation more (BenchmarkProxyH1).
//
// # Timeouts and limits
//
// Every timeout has a bounded default (Config, UpstreamTimeouts): upstream
// connect 5s, TLS handshake 10s, response header 60s, read and write idle
// 60s; downstream request head 10s (slowloris), keep-alive idle 60s, body
// read and write idle 60s. Request heads over 64 KiB get 431, bodies over
// the route's limit 413, and at most 16384 client connections are served at
// once.
//
// # Routing
//
// Router is a ready routing table (host with wildcards, longest path prefix,
// upstream groups with a load-balancing policy from package lb), swapped
// atomically: requests in flight keep the table they started with.
// RouterApp wraps it into an App. Peer health and pooled connections are
// keyed by the peer's identity (address, protocol, TLS settings,
// Peer.RootCAsID), so they survive a swap that keeps the peer and are freed
// by one that drops it (see PeerWatcher).
package proxy
