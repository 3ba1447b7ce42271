package proxy

import (
	"fmt"
	"net/textproto"
	"strings"
)

// HashKey says which part of a request the hashing policies (ketama, fnv)
// hash. The zero HashKey hashes the URI.
type HashKey struct {
	kind hashKind
	name string // header (canonical), cookie or query parameter name
}

type hashKind uint8

const (
	hashURI hashKind = iota
	hashPath
	hashHeader
	hashCookie
	hashClientIP
	hashQuery
)

// ParseHashKey parses "uri" (the request target with its query, as nginx's
// $request_uri), "path", "client_ip", "header:NAME", "cookie:NAME" or
// "query:NAME". "" means "uri". A name on uri, path or client_ip is an
// error, not ignored, and a header name must be a field name (a token).
func ParseHashKey(s string) (HashKey, error) {
	kind, name, hasName := strings.Cut(s, ":")
	switch kind {
	case "", "uri", "path", "client_ip":
		if hasName {
			return HashKey{}, fmt.Errorf("proxy: hash key %q: %q takes no name", s, kind)
		}
		switch kind {
		case "path":
			return HashKey{kind: hashPath}, nil
		case "client_ip":
			return HashKey{kind: hashClientIP}, nil
		}
		return HashKey{kind: hashURI}, nil
	case "header", "cookie", "query":
		if name == "" {
			return HashKey{}, fmt.Errorf("proxy: hash key %q needs a name, like %s:NAME", s, kind)
		}
		switch kind {
		case "header":
			if !isToken(name) {
				return HashKey{}, fmt.Errorf("proxy: hash key %q: %q is not a header name", s, name)
			}
			return HashKey{kind: hashHeader, name: textproto.CanonicalMIMEHeaderKey(name)}, nil
		case "cookie":
			return HashKey{kind: hashCookie, name: name}, nil
		}
		return HashKey{kind: hashQuery, name: name}, nil
	}
	return HashKey{}, fmt.Errorf("proxy: hash key %q is not one of uri, path, client_ip, header:NAME, cookie:NAME, query:NAME", s)
}

// extract returns the key of s's request without allocating: a missing
// header, cookie or parameter hashes as "".
func (k HashKey) extract(s *Session) string {
	switch k.kind {
	case hashPath:
		return s.Req.Path()
	case hashClientIP:
		return s.RealIP()
	case hashHeader:
		if v := s.Req.Header[k.name]; len(v) > 0 {
			return v[0]
		}
		return ""
	case hashCookie:
		for _, line := range s.Req.Header["Cookie"] {
			if v, ok := cookieValue(line, k.name); ok {
				return v
			}
		}
		return ""
	case hashQuery:
		return queryValue(s.Req.Query(), k.name)
	}
	return s.Req.URI
}

// cookieValue finds name in one Cookie header line ("a=1; b=2").
func cookieValue(line, name string) (string, bool) {
	for line != "" {
		var part string
		part, line, _ = strings.Cut(line, ";")
		part = strings.TrimSpace(part)
		if k, v, ok := strings.Cut(part, "="); ok && k == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}

// queryValue returns the raw (still escaped) value of the first name=value
// in a query string.
func queryValue(q, name string) string {
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		if k, v, _ := strings.Cut(part, "="); k == name {
			return v
		}
	}
	return ""
}
