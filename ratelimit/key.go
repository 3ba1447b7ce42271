package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"unsafe"

	"github.com/pingora-go/pingora-go/internal/cginame"
)

// source is one part of a key: where in the request its value comes from.
type source struct {
	kind sourceKind
	name string // header (canonical), cookie or query parameter name
	form string // kindCookie, kindQuery: cginame.ParamName(name)
	lit  string // kindLiteral: the text itself
}

type sourceKind uint8

const (
	kindLiteral sourceKind = iota
	kindClientIP
	kindRoute
	kindMethod
	kindHost
	kindPath
	kindHeader
	kindCookie
	kindQuery
)

// Key is a parsed rule key: one source, or a template of literal text and
// sources.
type Key struct {
	parts []source
	// repeatable: a part may have several values in one request
	// (alternates).
	repeatable bool
}

// maxKeyLen bounds a key built from a request: a longer one is cut, so a
// client cannot make the node hold (or send to an owner) unbounded keys.
const maxKeyLen = 256

// ParseKey parses a rule key: one of client_ip, route, method, host, path,
// header:NAME, cookie:NAME, query:NAME; or a template in which such names
// stand in braces among literal text, as "{route}/{header:x-api-key}".
func ParseKey(s string) (Key, error) {
	if s == "" {
		return Key{}, fmt.Errorf("empty key")
	}
	if !strings.ContainsAny(s, "{}") {
		src, err := parseSource(s)
		if err != nil {
			return Key{}, err
		}
		return Key{parts: []source{src}, repeatable: src.repeatable()}, nil
	}
	var k Key
	for rest := s; rest != ""; {
		open := strings.IndexByte(rest, '{')
		if close := strings.IndexByte(rest, '}'); close >= 0 && (open < 0 || close < open) {
			return Key{}, fmt.Errorf("%q: '}' without '{'", s)
		}
		if open < 0 {
			k.parts = append(k.parts, source{kind: kindLiteral, lit: rest})
			break
		}
		if open > 0 {
			k.parts = append(k.parts, source{kind: kindLiteral, lit: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return Key{}, fmt.Errorf("%q: '{' without '}'", s)
		}
		src, err := parseSource(rest[open+1 : open+end])
		if err != nil {
			return Key{}, fmt.Errorf("%q: %w", s, err)
		}
		k.parts = append(k.parts, src)
		rest = rest[open+end+1:]
	}
	if len(k.parts) == 1 && k.parts[0].kind == kindLiteral || !k.hasSource() {
		return Key{}, fmt.Errorf("%q names no request part: a constant key would count every request as one", s)
	}
	k.repeatable = slices.ContainsFunc(k.parts, func(p source) bool { return p.repeatable() })
	return k, nil
}

func (k Key) hasSource() bool {
	for _, p := range k.parts {
		if p.kind != kindLiteral {
			return true
		}
	}
	return false
}

func parseSource(s string) (source, error) {
	kind, name, hasName := strings.Cut(s, ":")
	plain := map[string]sourceKind{"client_ip": kindClientIP, "route": kindRoute, "method": kindMethod, "host": kindHost, "path": kindPath}
	if k, ok := plain[kind]; ok {
		if hasName {
			return source{}, fmt.Errorf("%q takes no name", kind)
		}
		return source{kind: k}, nil
	}
	named := map[string]sourceKind{"header": kindHeader, "cookie": kindCookie, "query": kindQuery}
	k, ok := named[kind]
	if !ok {
		return source{}, fmt.Errorf("%q is not one of client_ip, route, method, host, path, header:NAME, cookie:NAME, query:NAME", s)
	}
	if name == "" || strings.ContainsAny(name, " \t{}:;=&") {
		return source{}, fmt.Errorf("%q needs a name, like %s:NAME", s, kind)
	}
	if k == kindHeader {
		name = textproto.CanonicalMIMEHeaderKey(name)
	}
	return source{kind: k, name: name, form: cginame.ParamName(name)}, nil
}

// value returns the request's value for src and whether it has one.
func (src *source) value(r *Request) (string, bool) {
	switch src.kind {
	case kindLiteral:
		return src.lit, true
	case kindClientIP:
		ip := clientKey(r.ClientIP)
		return ip, ip != ""
	case kindRoute:
		return r.Route, r.Route != ""
	case kindMethod:
		return r.Method, r.Method != ""
	case kindHost:
		// Host names are compared without case (RFC 9110 section 4.2.3),
		// as routes and a rule's match do: one counter per host, however
		// a client spells it.
		h := lowerASCII(hostOnly(r.Host))
		return h, h != ""
	case kindPath:
		return r.Path, r.Path != ""
	case kindHeader:
		v := r.Header[src.name]
		if len(v) == 0 {
			v = otherSpelling(r.Header, src.name)
		}
		if len(v) == 0 || v[0] == "" {
			return "", false
		}
		return v[0], true
	case kindCookie:
		if v, ok := cookieValue(r.Header["Cookie"], src.name); ok {
			return v, true
		}
		return cookieSpelt(r.Header["Cookie"], src.form)
	case kindQuery:
		if v, ok := queryValue(r.RawQuery, src.name); ok {
			return v, true
		}
		return querySpelt(r.RawQuery, src.form)
	}
	return "", false
}

// build returns r's key and whether r has every part of it. A one-part
// key is the request's own string, not copied; a template is assembled in
// the buffer buf returns and the result aliases it (unsafe.String), so a
// caller that keeps the key must clone it (see table.getOrCreate).
func (k *Key) build(r *Request, buf func() *[maxKeyLen]byte) (string, bool) {
	if len(k.parts) == 1 {
		v, ok := k.parts[0].value(r)
		return fitKey(v), ok
	}
	b := buf()[:0]
	var long []byte // the whole key, once it outgrows the buffer
	for i := range k.parts {
		v, ok := k.parts[i].value(r)
		if !ok {
			return "", false
		}
		switch {
		case long != nil:
			long = append(long, v...)
		case len(b)+len(v) > maxKeyLen:
			long = append(append(make([]byte, 0, len(b)+len(v)), b...), v...)
		default:
			b = append(b, v...)
		}
	}
	if long != nil {
		return fitKey(string(long)), true
	}
	if len(b) == 0 {
		return "", false
	}
	return unsafe.String(unsafe.SliceData(b), len(b)), true
}

// fitKey returns key when it fits maxKeyLen, else its first bytes, a NUL
// and 32 hex digits of the SHA-256 of all of it, maxKeyLen bytes in all:
// a long value is still a counter of its own. Cut alone, every value with
// the same first 256 bytes had one counter: the JWTs of one issuer, whose
// fixed claims come first, keyed by header:Authorization, so a client
// sending forged tokens with that start (the limiter counts before the
// origin checks a signature) spent every user's limit.
func fitKey(key string) string {
	if len(key) <= maxKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	const tail = 1 + 2*16
	return key[:maxKeyLen-tail] + "\x00" + hex.EncodeToString(sum[:16])
}

// otherSpelling returns the values of a field of h that CGI-style origins
// (PHP, WSGI, Rack) read as the canonical name: the same name in another
// case or with '_' for '-' ("X_Api_Key" as HTTP_X_API_KEY), which the
// proxy passes on. A request that sent its key so spelt had no key, and
// was not counted by the rule. When several such fields exist the least
// in byte order is taken, so that the choice does not follow a map's
// order.
func otherSpelling(h map[string][]string, name string) []string {
	var best string
	var vals []string
	for k, v := range h {
		if len(k) == len(name) && cginame.Same(k, name) && (vals == nil || k < best) {
			best, vals = k, v
		}
	}
	return vals
}

// cookieValue finds name among Cookie fields without allocating.
func cookieValue(fields []string, name string) (string, bool) {
	for _, line := range fields {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			n, v, ok := strings.Cut(part, "=")
			if ok && n == name && v != "" {
				return strings.Trim(v, `"`), true
			}
		}
	}
	return "", false
}

// queryValue finds the first name=value in a raw query whose name is name
// and whose value is not empty, both compared decoded as the origin's
// query parser decodes them (percent-escapes, '+' for a space): a key
// spelled with escapes (k=%61bc, ke%79=abc) is the same key, not a new
// counter. A part that needs no decoding allocates nothing; one with an
// invalid escape is taken as it is.
func queryValue(q, name string) (string, bool) {
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		n, v, _ := strings.Cut(part, "=")
		if unescapeQuery(n) == name {
			if v = unescapeQuery(v); v != "" {
				return v, true
			}
		}
	}
	return "", false
}

// querySpelt finds, in a query without the name itself, the first
// parameter with a value whose name some origin reads as the name, by its
// form (cginame.ParamName): "API_KEY" (ASP.NET), "api_key[]" and
// "api.key" (PHP), one after a ';' ("x=1;api_key=k": Rack 2 and others
// split there too). A request that sent its key so spelt had no key, was
// not counted by the rule, and its origin read the key all the same.
func querySpelt(q, form string) (string, bool) {
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		for pair != "" {
			var part string
			part, pair, _ = strings.Cut(pair, ";")
			n, v, _ := strings.Cut(part, "=")
			if cginame.SameParam(n, form) {
				if v = unescapeQuery(v); v != "" {
					return v, true
				}
			}
		}
	}
	return "", false
}

// cookieSpelt is querySpelt for the Cookie fields of a request without
// the cookie itself: "SESSION" (ASP.NET), "session " before the '='
// (Node's cookie parser trims), "sess%69on" and "session[]" (PHP).
func cookieSpelt(fields []string, form string) (string, bool) {
	for _, line := range fields {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			n, v, ok := strings.Cut(part, "=")
			if ok && cginame.SameParam(n, form) {
				if v = strings.Trim(strings.TrimSpace(v), `"`); v != "" {
					return v, true
				}
			}
		}
	}
	return "", false
}

// unescapeQuery decodes one query name or value; s itself when it has
// nothing to decode or cannot be decoded.
func unescapeQuery(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// lowerASCII returns s in lower case, s itself when it has no upper-case
// ASCII letter (no allocation in the usual case).
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// clientKey is the client_ip key of address ip: an IPv4 address as it is,
// an IPv6 one by its /64 ("2001:db8:1:2::/64"), as the node's per-address
// connection cap counts it. One host is commonly given a whole /64 (RFC
// 6177) and takes a new address from it at will (privacy addresses, one
// per connection if it likes), so each address of its own counter let a
// client past any limit; nginx's limit_req on $binary_remote_addr has the
// same hole, Cloudflare's rate limiting counts IPv6 clients by /64. A
// value that is no IP address (a test's name) is kept as it is.
func clientKey(ip string) string {
	if strings.IndexByte(ip, ':') < 0 {
		return ip // IPv4 (clientIP prints an IPv4-mapped address unmapped), or empty
	}
	a, err := netip.ParseAddr(ip)
	switch {
	case err != nil:
		return ip
	case a.Is4In6():
		return a.Unmap().String()
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// maxKeyValues bounds the different values one request may give a rule's
// key (a parameter, cookie or header sent more than once, or spelt more
// than one way): each is counted, and a request with more is refused
// rather than decided that many times.
const maxKeyValues = 4

// alternates appends to out the other keys r gives k besides first (what
// build returned): one for each other value of a header sent more than
// once, or of a cookie or query parameter sent more than once under its
// name or its spellings. Origins part ways on which one they read: Go,
// Flask and Express's first, PHP, Django and Rails the last
// ("?api_key=junk&api_key=REAL" is REAL to them, and PHP reads api.key as
// api_key too), so a client sending a new junk value first each time was
// never counted under the key its origin served it as. Counted under every
// value, it is. over reports more than maxKeyValues different keys in
// all, or more than one part of a template with several values (the
// request is refused, not decided under each combination).
func (k *Key) alternates(r *Request, first string, out []string) (_ []string, over bool) {
	multi := -1
	var vals []string
	for i := range k.parts {
		if !k.parts[i].repeatable() {
			continue
		}
		var arr [maxKeyValues + 1]string
		vs := arr[:0]
		k.parts[i].each(r, func(v string) bool {
			if !containsStr(vs, v) {
				vs = append(vs, v)
			}
			return len(vs) <= maxKeyValues
		})
		if len(vs) < 2 {
			continue
		}
		if multi >= 0 {
			return out, true
		}
		multi, vals = i, slices.Clone(vs)
	}
	if len(vals) > maxKeyValues {
		return out, true
	}
	for _, v := range vals {
		if key := k.with(r, multi, v); key != "" && key != first && !containsStr(out, key) {
			out = append(out, key)
		}
	}
	return out, false
}

// with is r's key with part i's value v (a template's other parts as
// build takes them); "" when a part has no value.
func (k *Key) with(r *Request, i int, v string) string {
	if len(k.parts) == 1 {
		return fitKey(v)
	}
	var b []byte
	for j := range k.parts {
		pv, ok := v, true
		if j != i {
			pv, ok = k.parts[j].value(r)
		}
		if !ok {
			return ""
		}
		b = append(b, pv...)
	}
	return fitKey(string(b))
}

// repeatable reports whether a request may give src more than one value.
func (src *source) repeatable() bool {
	return src.kind == kindHeader || src.kind == kindCookie || src.kind == kindQuery
}

// each calls yield with every non-empty value r gives src, in the order
// value would look for them, until yield returns false: a header's lines
// (of its own name, else of the spelling value took), a cookie's and a
// query parameter's under the name, then under each spelling of it (the
// name's own again among them: callers drop repeats).
func (src *source) each(r *Request, yield func(string) bool) {
	switch src.kind {
	case kindHeader:
		v := r.Header[src.name]
		if len(v) == 0 {
			v = otherSpelling(r.Header, src.name)
		}
		for _, s := range v {
			if s != "" && !yield(s) {
				return
			}
		}
	case kindCookie:
		for _, exact := range [2]bool{true, false} {
			for _, line := range r.Header["Cookie"] {
				for line != "" {
					var part string
					part, line, _ = strings.Cut(line, ";")
					n, v, ok := strings.Cut(part, "=")
					if !ok || exact && strings.TrimSpace(n) != src.name || !exact && !cginame.SameParam(n, src.form) {
						continue
					}
					if v = strings.Trim(strings.TrimSpace(v), `"`); v != "" && !yield(v) {
						return
					}
				}
			}
		}
	case kindQuery:
		for _, exact := range [2]bool{true, false} {
			for q := r.RawQuery; q != ""; {
				var pair string
				pair, q, _ = strings.Cut(q, "&")
				for pair != "" {
					var part string
					if exact {
						part, pair = pair, ""
					} else {
						part, pair, _ = strings.Cut(pair, ";")
					}
					n, v, _ := strings.Cut(part, "=")
					if exact && unescapeQuery(n) != src.name || !exact && !cginame.SameParam(n, src.form) {
						continue
					}
					if v = unescapeQuery(v); v != "" && !yield(v) {
						return
					}
				}
			}
		}
	}
}
