package h1

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
)

// The grammar below is what ReadRequest accepts and what WriteRequestHead
// writes. A proxy that checks a request from another protocol (HTTP/2)
// against it knows the request it forwards over HTTP/1.1 parses back, by
// this package and by the upstream, as the request it routed: no space to
// start a second request line, no userinfo to make two Hosts.

// ValidMethod reports whether m is a method token (RFC 9110 section 9.1).
func ValidMethod(m string) bool { return isToken(m) }

// ValidFieldName reports whether k is a field name token (RFC 9110 section
// 5.1).
func ValidFieldName(k string) bool { return isToken(k) }

// ValidFieldValue reports whether v is a field value that parses back
// unchanged: no control byte other than HTAB (so no CR, LF or NUL), no DEL,
// and no leading or trailing SP or HTAB, which a parser strips (RFC 9110
// section 5.5; RFC 9113 section 8.2.1 makes them malformed in HTTP/2).
func ValidFieldValue(v string) bool {
	if v == "" {
		return true
	}
	if c := v[0]; c == ' ' || c == '\t' {
		return false
	}
	if c := v[len(v)-1]; c == ' ' || c == '\t' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if isCTL(v[i]) {
			return false
		}
	}
	return true
}

// ValidTarget reports whether target is a request-target for method in the
// form a proxy forwards: origin-form ("/" then no whitespace, control byte
// or '#'), "*" for OPTIONS, authority-form (host:port) for CONNECT.
func ValidTarget(method, target string) bool {
	switch {
	case method == http.MethodConnect:
		return validConnectAuthority(target)
	case target == "*":
		return method == http.MethodOptions
	case target == "" || target[0] != '/':
		return false
	}
	return validTargetBytes(target) && !ParamHidesSlash(target) && !ParamOnDotSegment(target) && !SlashHidesDotSegment(target) &&
		!PercentUHidesPathChar(target)
}

// PercentUHidesPathChar reports whether the path (before any '?') spells a
// dot, a slash or a backslash in the %uNNNN notation ("%u002e", "%u002f",
// "%u005c", in any case) that IIS's HTTP.sys decodes by default (its
// PercentUAllowed setting) before it resolves dot segments:
// "/public/%u002e%u002e/private/x" is "/private/x" to IIS and
// "/api%u002flogin" is "/api/login", while route.MatchPath, nginx and
// Express read no dot segment and no slash there (Go refuses the escape).
// As with SlashHidesDotSegment, no one path the proxy matches rules
// against is the one every origin serves: a caching "/public/" route
// took an IIS origin's private page, and a rule for "/api/login" was
// dodged. No client spells these characters so; the proxy refuses them
// (400).
func PercentUHidesPathChar(target string) bool {
	if q := strings.IndexByte(target, '?'); q >= 0 {
		target = target[:q]
	}
	for i := strings.IndexByte(target, '%'); i >= 0 && i+6 <= len(target); {
		if u := target[i+1]; (u == 'u' || u == 'U') && target[i+2] == '0' && target[i+3] == '0' {
			switch hi, lo := target[i+4], target[i+5]|0x20; { // lo in lower case, if a letter
			case hi == '2' && (lo == 'e' || lo == 'f'), hi == '5' && lo == 'c':
				return true
			}
		}
		j := strings.IndexByte(target[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// ParamOnDotSegment reports whether a dot segment carries a parameter:
// a segment (bounded by '/' or "%2F") that is "." or ".." ("%2e" spelled
// or not) before its ';' ("/x/..;/admin", "/x/%2e%2e;v=1/admin",
// "/x%2F..;/admin"). Tomcat drops the parameter
// and reads the dot segment: "/private/..;/public/x" is "/public/x" to
// it, and to route.MatchPath; Go, nginx and Express read no dot segment
// there and serve a path under "/private/". As with ParamHidesSlash, no
// one path the proxy matches rules against is the one every origin
// serves: matched as Tomcat reads it, the request took a caching
// "/public/" route to a Go origin's private page (cache deception), and
// dodged the rules for "/private/". Jetty refuses such a path by default
// (an ambiguous path parameter); so does the proxy (400).
func ParamOnDotSegment(target string) bool {
	if q := strings.IndexByte(target, '?'); q >= 0 {
		target = target[:q]
	}
	for i := strings.IndexByte(target, ';'); i >= 0; {
		seg := target[strings.LastIndexByte(target[:i], '/')+1 : i]
		// An encoded slash ends a segment too, to Go and nginx:
		// "/private%2F..;x/public" is a path under "/private/" to
		// them, "/public" to route.MatchPath.
		for j := len(seg) - 1; j >= 0; j-- {
			if n := slashAt(seg, j); n > 0 {
				seg = seg[j+n:]
				break
			}
		}
		if isDotSegment(seg) {
			return true
		}
		next := strings.IndexByte(target[i:], '/')
		if next < 0 {
			return false
		}
		k := strings.IndexByte(target[i+next:], ';')
		if k < 0 {
			return false
		}
		i += next + k
	}
	return false
}

// ParamHidesSlash reports whether a path segment's parameters (from a ';'
// to the segment's end, before any '?') hold an encoded slash ("%2F"), or
// a backslash that IIS reads as a slash ('\', "%5C"; see slashAt).
// Origins disagree on which comes first: Tomcat and Jetty drop the
// parameters, then decode; Go, nginx and WSGI keep them and decode
// "%2F" to '/'. "/static/x;%2F..%2Faccount" is "/static/x" to the first
// and "/account" to the others, so no one path the proxy matches rules
// against is the one every origin serves: a rate limit or a caching
// route could be dodged or misapplied either way. Jetty, Tomcat and
// Spring refuse such a path by default; so does the proxy (400).
func ParamHidesSlash(target string) bool {
	i := strings.IndexByte(target, ';')
	if i < 0 {
		return false
	}
	if q := strings.IndexByte(target, '?'); q >= 0 {
		if q < i {
			return false
		}
		target = target[:q]
	}
	for t := target[i:]; ; {
		end := strings.IndexByte(t, '/')
		seg := t
		if end >= 0 {
			seg = t[:end]
		}
		for j := 0; j < len(seg); j++ {
			if slashAt(seg, j) > 0 {
				return true
			}
		}
		if end < 0 {
			return false
		}
		t = t[end:]
		k := strings.IndexByte(t, ';')
		if k < 0 {
			return false
		}
		t = t[k:]
	}
}

// SlashHidesDotSegment reports whether an encoded slash ("%2F") or a
// backslash ('\', "%5C", which IIS reads as a slash; see slashAt) bounds a
// dot segment ("/private/..%2Fpublic/x", "/a%2F.", "/public/..\private").
// Go's URL.Path and nginx decode "%2F" and read "/public/x" in the first,
// as route.MatchPath does; Express
// and Rack route on the path as sent, where ".." is no segment, and serve
// a page under "/private/". As with ParamHidesSlash, no one path the
// proxy matches rules against is the one every origin serves: a caching
// "/public/" route took an Express origin's private page (cache
// deception), and the rules for "/private/" were dodged. Tomcat and Jetty
// refuse every encoded slash by default; the proxy refuses these (400).
func SlashHidesDotSegment(target string) bool {
	if q := strings.IndexByte(target, '?'); q >= 0 {
		target = target[:q]
	}
	if strings.IndexByte(target, '%') < 0 && strings.IndexByte(target, '\\') < 0 {
		return false
	}
	start, encoded := 0, false // the segment's start; whether an encoded slash opened it
	for i := 0; i <= len(target); i++ {
		n := 0
		if i < len(target) {
			n = slashAt(target, i)
			if target[i] != '/' && n == 0 {
				continue
			}
		}
		if (encoded || n > 0) && isDotSegment(target[start:i]) {
			return true
		}
		encoded, start = n > 0, i+1
		if n > 0 {
			start = i + n
			i += n - 1
		}
	}
	return false
}

// slashAt returns the length of what some origin reads as a slash at
// p[i], other than '/' itself: an encoded slash ("%2F", read as '/' by Go,
// nginx and WSGI), or a backslash, raw or encoded ('\', "%5C": IIS and
// ASP.NET read both as '/'); 0 when there is none. A backslash is no URI
// character (RFC 3986) but Go, nginx and most origins take it in a path;
// where it bounds a dot segment ("/public/..\private/x"), IIS serves
// "/private/x" and the others a page under "/public/": as with "%2F", the
// proxy refuses that.
func slashAt(p string, i int) int {
	switch {
	case p[i] == '\\':
		return 1
	case p[i] == '%' && i+2 < len(p) && (p[i+1] == '2' && (p[i+2] == 'F' || p[i+2] == 'f') || p[i+1] == '5' && (p[i+2] == 'C' || p[i+2] == 'c')):
		return 3
	}
	return 0
}

// isDotSegment reports whether seg is "." or "..", each dot spelled '.'
// or "%2e".
func isDotSegment(seg string) bool {
	dots := 0
	for j := 0; j < len(seg); j++ {
		switch {
		case seg[j] == '.':
		case seg[j] == '%' && j+2 < len(seg) && seg[j+1] == '2' && (seg[j+2] == 'e' || seg[j+2] == 'E'):
			j += 2
		default:
			return false
		}
		dots++
	}
	return dots == 1 || dots == 2
}

// validTargetBytes refuses whitespace, controls, DEL and '#' (a fragment is
// never sent: RFC 9112 section 3.2).
func validTargetBytes(t string) bool {
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c == 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// ValidAuthority reports whether s is uri-host [":" port] (RFC 3986 section
// 3.2.2): a reg-name, IPv4 address or bracketed IP literal, then an optional
// port of 1 to 5 digits. Userinfo ('@'), whitespace, a path and an empty
// host are refused.
func ValidAuthority(s string) bool {
	host, port := s, ""
	if len(s) > 0 && s[0] == '[' {
		end := -1
		for i := 1; i < len(s); i++ {
			if s[i] == ']' {
				end = i
				break
			}
		}
		if end < 2 || !allIn(s[1:end], ipLiteralByte) {
			return false
		}
		host = s[:end+1]
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' {
				return false
			}
			port = rest[1:]
			if port == "" {
				return false
			}
		}
	} else {
		for i := 0; i < len(s); i++ {
			if s[i] == ':' {
				host, port = s[:i], s[i+1:]
				if port == "" {
					return false
				}
				break
			}
		}
		if host == "" || !allIn(host, regNameByte) {
			return false
		}
	}
	return port == "" || len(port) <= 5 && allIn(port, digitByte) && atoiPort(port) <= 65535
}

// atoiPort is the value of up to five decimal digits.
func atoiPort(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// validConnectAuthority is authority-form: a host and a port, both required
// (RFC 9112 section 3.2.3).
func validConnectAuthority(s string) bool {
	if !ValidAuthority(s) {
		return false
	}
	for i := len(s) - 1; i >= 0 && s[i] != ']'; i-- {
		if s[i] == ':' {
			return true
		}
	}
	return false
}

func allIn(s string, table *[256]bool) bool {
	for i := 0; i < len(s); i++ {
		if !table[s[i]] {
			return false
		}
	}
	return true
}

var digitByte, regNameByte, ipLiteralByte = func() (d, r, ip *[256]bool) {
	d, r, ip = new([256]bool), new([256]bool), new([256]bool)
	for c := '0'; c <= '9'; c++ {
		d[c], r[c], ip[c] = true, true, true
	}
	for c := 'a'; c <= 'z'; c++ {
		r[c], r[c-'a'+'A'] = true, true
		ip[c], ip[c-'a'+'A'] = true, true
	}
	// unreserved, pct-encoded and sub-delims
	for _, c := range "-._~%!$&'()*+,;=" {
		r[c] = true
	}
	// IPv6 and IPvFuture, with an RFC 6874 zone ("%25" then unreserved)
	for _, c := range ":.%-_~" {
		ip[c] = true
	}
	return d, r, ip
}()

// CheckRequestHead reports, with an error wrapping ErrUnwritable, the first
// part of a request head that would not parse back as the same request: a
// method that is not a token, a target that is not the origin-form, "*" or
// authority-form ValidTarget allows, a host that is neither empty nor a
// ValidAuthority, a field name that is not a token, a value ValidFieldValue
// refuses, or a second spelling of Host, Content-Length or
// Transfer-Encoding (a writer would send the field twice). Values are not
// quoted in the error: they may be secrets.
func CheckRequestHead(method, target, host string, h http.Header) error {
	if err := checkRequestLine(method, target, host); err != nil {
		return err
	}
	for k, vv := range h {
		if err := checkField(k, vv); err != nil {
			return err
		}
	}
	return nil
}

// checkRequestLine is CheckRequestHead for the request line and Host.
func checkRequestLine(method, target, host string) error {
	switch {
	case !ValidMethod(method):
		return fmt.Errorf("%w: invalid method %q", ErrUnwritable, method)
	case !ValidTarget(method, target):
		return fmt.Errorf("%w: invalid request target %q", ErrUnwritable, target)
	case host != "" && !ValidAuthority(host):
		return fmt.Errorf("%w: invalid host %q", ErrUnwritable, host)
	}
	return nil
}

// checkField is CheckRequestHead for one field.
func checkField(k string, vv []string) error {
	if !isToken(k) {
		return fmt.Errorf("%w: invalid field name %q", ErrUnwritable, k)
	}
	for _, v := range vv {
		if !ValidFieldValue(v) {
			return fmt.Errorf("%w: invalid value in field %q", ErrUnwritable, k)
		}
	}
	if framingAlias(k) {
		return fmt.Errorf("%w: field %q is a second spelling of %s", ErrUnwritable, k, textproto.CanonicalMIMEHeaderKey(k))
	}
	return nil
}

// framingAlias reports a key that is not canonical but names Host,
// Content-Length or Transfer-Encoding, which the writer owns.
func framingAlias(k string) bool {
	if len(k) != len("Host") && len(k) != len("Content-Length") && len(k) != len("Transfer-Encoding") {
		return false
	}
	switch c := textproto.CanonicalMIMEHeaderKey(k); c {
	case "Host", "Content-Length", "Transfer-Encoding":
		return c != k
	}
	return false
}
