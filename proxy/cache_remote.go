package proxy

import (
	"context"
	"crypto/tls"
	"net/http"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// CacheFill is a fill another party asks the engine to run: in a cluster,
// the node that owns a key fetches it from the origin once for every node
// (sharedcache), through its own phases and route, from the request the
// node that missed sent along.
type CacheFill struct {
	// Request is the request to send, as the asking node's request
	// phases left it. It is copied.
	Request *cache.Request
	// Key is the request's primary cache key; VariantKey the key Fill
	// holds (Key itself unless an index selected a variant).
	Key, VariantKey string
	// Index is the Vary index under Key that selected VariantKey (nil:
	// none). A response that varies otherwise is not stored.
	Index *cache.Variants
	// Fill is the lock on VariantKey, taken by the caller in Store; the
	// engine always ends it.
	Fill cache.Fill
	// Stale is the stored response under VariantKey to revalidate (nil:
	// none): its validators go to the origin, and a 304 refreshes it.
	Stale cache.Object
	// Store takes the fill's other store calls (a new variant's lock, an
	// invalidation): the caller's local store, so that nothing the fill
	// does is forwarded to another node again.
	Store cache.Store
}

// FillCache runs f's request through the phases as a background request
// (Session.Background is set, its response goes nowhere but the cache):
// EarlyRequestFilter and RequestFilter route it (with RouterApp, the
// route's cache settings decide storability and limits), then
// UpstreamPeer and the upstream phases fetch it from the origin, and
// ResponseCacheFilter decides as for any fill. The cache lookup is
// skipped: f brings the lock and the stale response. It returns when the
// response was read to its end or failed; f.Fill has then ended
// (committed, refreshed, or aborted when the response may not be stored
// or the route no longer caches). ctx bounds the request.
func (s *Server[C]) FillCache(ctx context.Context, f CacheFill) {
	src := f.Request
	h := make(http.Header, len(src.Header))
	for k, v := range src.Header {
		if k == "Range" || k == "If-Range" || isOverrideField(k) {
			continue // a fill is always of the whole response, of this URL and GET
		}
		h[k] = append([]string(nil), v...)
	}
	req := &RequestHeader{Method: http.MethodGet, URI: src.URI, Host: src.Host, Header: h, ProtoMajor: 1, ProtoMinor: 1}
	bg := &Session{ClientIP: src.ClientIP}
	if src.Scheme == "https" {
		bg.TLS = &tls.ConnectionState{} // the scheme the client used: X-Forwarded-Proto, the key
	}
	bg.reset(ctx, req, nullDownstream{})
	bg.ForwardedIP = src.ForwardedIP // hashed by client_ip as the asking node's request was
	bg.Background = true
	bg.cache = cacheState{key: f.Key, vkey: f.VariantKey, index: f.Index, fill: f.Fill, stale: f.Stale, store: f.Store}
	if !s.bg.run(bg, func() { s.handle(bg, time.Now()) }) {
		f.Fill.Abort(ErrServerClosed)
	}
}
