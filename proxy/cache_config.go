package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/pingora-go/pingora-go/internal/cginame"
	"github.com/pingora-go/pingora-go/proxy/cache"
)

// Cache defaults.
const (
	// DefaultCacheMaxObjectBytes is CacheConfig.MaxObjectBytes's default.
	DefaultCacheMaxObjectBytes = 16 << 20
	// DefaultCacheLockTimeout is CacheConfig.LockTimeout's default, as
	// nginx's proxy_cache_lock_timeout.
	DefaultCacheLockTimeout = 5 * time.Second
	// DefaultCacheStatusName names the cache in Cache-Status.
	DefaultCacheStatusName = "pingora-go"
)

// CacheConfig turns the HTTP cache on for the requests that carry it
// (RouteConfig.Cache, Session.Cache). Zero fields take their default.
type CacheConfig struct {
	// Store holds the responses (default nil: the server's store,
	// Config.CacheStore).
	Store cache.Store
	// MaxObjectBytes caps a stored body; a larger response streams
	// through uncached, also when that is learned mid-body (default 16
	// MiB).
	MaxObjectBytes int64
	// Key adds request fields to the default cache key (default: method,
	// scheme, host, path and the whole query).
	Key CacheKeySpec
	// StatusName names this cache in the Cache-Status response field (RFC
	// 9211); "off" sends no Cache-Status (default "pingora-go").
	StatusName string
	// LockTimeout bounds how long a request waits for another request's
	// fill of the same key (collapsed forwarding) before it goes to the
	// origin itself, uncached (default 5s).
	LockTimeout time.Duration
	// DefaultStaleIfError is the stale-if-error window (RFC 5861) of
	// responses that state none: a stale response is served for that long
	// past its freshness when the origin fails or answers 500, 502, 503
	// or 504 (default 0: none).
	DefaultStaleIfError time.Duration
}

// CacheKeySpec says which request parts make the cache key beyond method,
// scheme, host and path.
type CacheKeySpec struct {
	// Headers are request fields whose values are added (default none).
	Headers []string
	// Cookies are cookies whose values are added (default none).
	Cookies []string
	// Query, when non-nil, keeps only these query parameters, sorted by
	// name (a repeated name's values in the order sent, and every
	// spelling an origin may read as a kept name kept too: "ID", "i%64",
	// "id[]", "x=1;id=2"), in place of the whole query; an empty list
	// drops the query (default nil: the whole query as sent).
	Query []string
}

// Limits of CacheConfig.
const (
	// MaxCacheObjectBytes bounds CacheConfig.MaxObjectBytes.
	MaxCacheObjectBytes = 1 << 30
	// MaxCacheLockTimeout bounds CacheConfig.LockTimeout: a longer wait
	// holds a request on another's fill past any client's patience.
	MaxCacheLockTimeout = 5 * time.Minute
	// MaxCacheStaleIfError bounds CacheConfig.DefaultStaleIfError.
	MaxCacheStaleIfError = 7 * 24 * time.Hour
)

// Validate reports every invalid field, joined (errors.Join), each a
// *FieldError naming it.
func (c *CacheConfig) Validate() error {
	var f fieldErrs
	if c.MaxObjectBytes < 0 || c.MaxObjectBytes > MaxCacheObjectBytes {
		f.add("MaxObjectBytes", "%d is not between 0 (default 16 MiB) and 1 GiB", c.MaxObjectBytes)
	}
	if c.LockTimeout < 0 || c.LockTimeout > MaxCacheLockTimeout {
		f.add("LockTimeout", "%s is not between 0 (default 5s) and %s", c.LockTimeout, MaxCacheLockTimeout)
	}
	if c.DefaultStaleIfError < 0 || c.DefaultStaleIfError > MaxCacheStaleIfError {
		f.add("DefaultStaleIfError", "%s is not between 0 and %s", c.DefaultStaleIfError, MaxCacheStaleIfError)
	}
	if c.StatusName != "" && !isToken(c.StatusName) {
		f.add("StatusName", "%q is not a token (letters, digits and !#$%%&'*+-.^_`|~), or off", c.StatusName)
	}
	for _, list := range []struct {
		name  string
		items []string
	}{{"Headers", c.Key.Headers}, {"Cookies", c.Key.Cookies}, {"Query", c.Key.Query}} {
		for i, v := range list.items {
			if !isToken(v) {
				f.add(fmt.Sprintf("Key.%s[%d]", list.name, i), "%q is not a name (a token)", v)
			}
		}
	}
	return errors.Join(f...)
}

func (c *CacheConfig) maxObject() int64 {
	if c.MaxObjectBytes > 0 {
		return c.MaxObjectBytes
	}
	return DefaultCacheMaxObjectBytes
}

func (c *CacheConfig) lockTimeout() time.Duration {
	if c.LockTimeout > 0 {
		return c.LockTimeout
	}
	return DefaultCacheLockTimeout
}

func (c *CacheConfig) statusName() string {
	if c.StatusName == "" {
		return DefaultCacheStatusName
	}
	return c.StatusName
}

// DefaultCacheKey returns the cache key of s's request: the method (HEAD
// as GET, as a HEAD is answered from a stored GET), scheme, host (lower
// case), path and query, then the additions of s.Cache.Key, then the
// forwarding fields a trusted proxy sent (keyForwarding), each behind a
// NUL byte that no request field can hold.
func DefaultCacheKey(s *Session) string {
	r := s.Req
	var spec CacheKeySpec
	if s.Cache != nil {
		spec = s.Cache.Key
	}
	method := r.Method
	if method == "HEAD" {
		method = "GET"
	}
	var b strings.Builder
	b.Grow(len(method) + len(r.Host) + len(r.URI) + 12)
	b.WriteString(method)
	b.WriteByte(' ')
	b.WriteString(s.scheme())
	b.WriteString("://")
	b.WriteString(strings.ToLower(r.Host))
	b.WriteString(r.Path())
	if i := strings.IndexByte(r.URI, '?'); i >= 0 {
		if q := selectQuery(r.URI[i+1:], spec.Query); spec.Query == nil || q != "" {
			b.WriteByte('?')
			b.WriteString(q)
		}
	}
	for _, h := range spec.Headers {
		b.WriteString("\x00h:" + h + "=")
		// Lines apart: an origin reading the first line tells two lines
		// from one line of the same values.
		b.WriteString(strings.Join(r.Header.Values(h), "\n"))
		keyFieldSpellings(&b, r.Header, h)
	}
	for _, c := range spec.Cookies {
		b.WriteString("\x00c:" + c + "=")
		keyCookie(&b, r.Header["Cookie"], c)
	}
	keyForwarding(&b, r.Header)
	return b.String()
}

// keyForwarding writes, after a mark, the name (lower case) and values of
// every forwarding field of h in name order, but for those that name the
// client (X-Forwarded-For, X-Real-IP, Forwarded's for=): every client
// would have a key of its own. An untrusted client's forwarding fields
// were removed as the request arrived (dropForwarding), so these are a
// trusted proxy's, and they reach the origin, which builds its page from
// them: behind a load balancer that ends TLS, the page an origin made
// with http:// links (or its redirect to https) for a client that came in
// over http, "X-Forwarded-Proto: http", was stored under the key https
// clients use, and a balancer that leaves X-Forwarded-Host alone (AWS's
// ALB) passed a client's own to the origin, under a key without it.
func keyForwarding(b *strings.Builder, h http.Header) {
	var names []string
	for k := range h {
		if isForwardingField(k) && !fieldNameIs(k, "x-forwarded-for") && !fieldNameIs(k, "x-real-ip") {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return
	}
	slices.Sort(names)
	for _, k := range names {
		b.WriteString("\x00f:" + strings.ToLower(k) + "=")
		for i, v := range h[k] {
			if i > 0 {
				b.WriteByte('\n')
			}
			if fieldNameIs(k, "forwarded") {
				v = withoutForwardedFor(v)
			}
			b.WriteString(v)
		}
	}
}

// withoutForwardedFor returns a Forwarded field value (RFC 7239) without
// its for= parameters, which name the client.
func withoutForwardedFor(v string) string {
	var out strings.Builder
	for i, elem := range strings.Split(v, ",") {
		if i > 0 {
			out.WriteByte(',') // each element stays one: origins read the first
		}
		n := 0
		for pair := range strings.SplitSeq(elem, ";") {
			pair = strings.TrimSpace(pair)
			if name, _, _ := strings.Cut(pair, "="); strings.EqualFold(strings.TrimSpace(name), "for") {
				continue
			}
			if n > 0 {
				out.WriteByte(';')
			}
			out.WriteString(pair)
			n++
		}
	}
	return out.String()
}

// keyFieldSpellings writes, after a mark, the name and values of every
// other field of h that CGI-style origins read as field name
// (cache.OtherSpellings: "X_Tenant" for X-Tenant), which the proxy passes
// on. Without them a request with "X_Tenant: evil" had the key of the
// request without a tenant.
func keyFieldSpellings(b *strings.Builder, h http.Header, name string) {
	for _, k := range cache.OtherSpellings(h, textproto.CanonicalMIMEHeaderKey(name)) {
		b.WriteString("\x01" + k + "=")
		b.WriteString(strings.Join(h[k], "\n"))
	}
}

// keyCookie writes every value of cookie name in the Cookie lines, in
// order, LF apart (no field value holds one), for the cache key. Origins
// differ on a repeated cookie (Go's keeps the first, Python's the last)
// and on spaces around the name and value, so each such spelling makes a
// key of its own: the first value alone gave one key to requests an
// origin answers differently, and a name with a space after it ("lang
// =de"), read as lang by origins that trim, was no cookie at all. So
// were the other spellings some origin reads as the name (cginame.ParamName:
// "LANG" to ASP.NET, "l%61ng" and "lang[]" to PHP); one that is not the
// plain name goes in whole, after a mark.
func keyCookie(b *strings.Builder, lines []string, name string) {
	n := 0
	want := cginame.ParamName(name)
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(part, "=")
			if !ok || strings.TrimSpace(k) != name && cginame.ParamName(k) != want {
				continue
			}
			if n > 0 {
				b.WriteByte('\n')
			}
			if strings.TrimLeft(k, " \t") != name {
				b.WriteByte('\x01') // "lang =", "LANG": not the plain spelling
				b.WriteString(k)
				b.WriteByte('=')
			}
			b.WriteString(v) // untrimmed, for the same reason
			n++
		}
	}
}

// selectQuery returns raw, or with keep set only the kept parameters in
// name order. A name given more than once keeps its values in the order
// sent: an origin reads the first, so "id=2&id=1" and "id=1&id=2" are two
// answers and must be two keys (sorting whole pairs made them one). A
// parameter is kept when any origin may read it as a kept name
// (keptName), so that no spelling of one falls out of the key.
func selectQuery(raw string, keep []string) string {
	if keep == nil || raw == "" {
		return raw
	}
	type param struct{ name, pair string }
	var kept []param
	for _, p := range strings.Split(raw, "&") {
		if name, ok := keptName(p, keep); ok {
			kept = append(kept, param{name, p})
		}
	}
	slices.SortStableFunc(kept, func(a, b param) int { return strings.Compare(a.name, b.name) })
	var b strings.Builder
	for i, p := range kept {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.pair)
	}
	return b.String()
}

// keptName returns the kept name that the parameter pair may be read as,
// by some origin: its name escaped ("i%64"), in another case ("ID":
// ASP.NET's names ignore case), with spaces around it ("%20id": PHP drops
// leading ones), as an array ("id[]", "id[0]": PHP, Rack), with '.' or a
// space for '_' (PHP reads "user.id" as user_id), or after a ';' in the
// pair ("x=1;id=2": Rack 2 and others split on ';' too). Keeping more
// pairs than an origin reads only makes more keys; dropping one it reads
// let a request with "?ID=evil" fill the key of the page without id
// (parameter cloaking).
func keptName(pair string, keep []string) (string, bool) {
	for part := range strings.SplitSeq(pair, ";") {
		name, _, _ := strings.Cut(part, "=")
		n := cginame.ParamName(name)
		for _, k := range keep {
			if n == cginame.ParamName(k) {
				return k, true
			}
		}
	}
	return "", false
}
