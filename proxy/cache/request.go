package cache

import (
	"context"
	"net/http"
	"strings"

	"github.com/pingora-go/pingora-go/proxy/route"
)

// Request is the client request a Store call is made for. The engine
// puts it in the context of every Lookup, Lock and Remove (WithRequest),
// so a store that fills somewhere else (the cluster tier, where a key's
// owner fetches it from the origin for every node) can send the request
// along; a local store ignores it.
//
// It is valid only during the call: the engine reuses its fields for the
// connection's next request, so a store that keeps it must copy it.
type Request struct {
	// Method is GET or HEAD (a HEAD is answered from a stored GET).
	Method string
	// Scheme is "http" or "https": how the client reached the proxy.
	Scheme string
	// Host is the request's authority; URI its path and query.
	Host, URI string
	// Header holds the request's fields (canonical keys) after the
	// request phases ran, Host not among them.
	Header http.Header
	// ClientIP is the client's address without port: the connection's
	// peer. ForwardedIP is the client a trusted proxy in front reported
	// ("" when none did): the request's real client, which client_ip
	// hashing and rate limits go by (proxy.Session.RealIP).
	ClientIP, ForwardedIP string
}

type requestKey struct{}

// WithRequest returns ctx carrying r for the Store calls made with it.
func WithRequest(ctx context.Context, r *Request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// RequestFrom returns the Request ctx carries, or nil.
func RequestFrom(ctx context.Context) *Request {
	r, _ := ctx.Value(requestKey{}).(*Request)
	return r
}

type recheckKey struct{}

// WithRecheck returns ctx marking a Lookup as a recheck: the engine looks
// a key up again once Lock gave it the fill (or the fill it waited for
// stored nothing), because another fill may have stored the key between
// the request's first Lookup and that Lock. A store that counts lookups
// should leave a recheck out (the request's lookup was counted); one that
// holds keys elsewhere may answer it from what it holds here alone.
func WithRecheck(ctx context.Context) context.Context {
	return context.WithValue(ctx, recheckKey{}, true)
}

// IsRecheck reports whether ctx marks a recheck (WithRecheck).
func IsRecheck(ctx context.Context) bool {
	v, _ := ctx.Value(recheckKey{}).(bool)
	return v
}

// variantSep separates a variant key from its primary key (VariantKey).
const variantSep = "\x00vary\x00"

// PrimaryKey returns the primary key a key belongs to: key itself, or for
// a variant key (VariantKey) the key whose index selected it. A store
// that places keys (on a ring) places a key's variants with it, so that
// one node holds a URL's index and all its variants.
func PrimaryKey(key string) string {
	if i := strings.Index(key, variantSep); i >= 0 {
		return key[:i]
	}
	return key
}

// CleanPath normalises a request path (without query) as the engine does
// before it keys, routes and forwards a request (route.CleanPath: dot
// segments, runs of slashes, needless escapes), so that a store naming a
// URL from outside a request (a purge) finds the key the request made.
func CleanPath(p string) string { return route.CleanPath(p) }
