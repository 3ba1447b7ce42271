package route

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/pingora-go/pingora-go/internal/asciifold"
)

// Rule sends requests for Host and PathPrefix to Target.
type Rule[T any] struct {
	// Host is an exact name ("api.example.com"), a wildcard
	// ("*.example.com": any name below example.com) or "*" / "" for any host.
	Host string
	// PathPrefix is the path prefix to match; "" means "/".
	PathPrefix string
	// CaseInsensitive matches PathPrefix without regard to the case of
	// ASCII letters, for origins that serve "/Admin" as "/admin" (IIS,
	// and any on a case-insensitive file system): there, a rule for
	// "/admin" that matches case-sensitively is passed by "/ADMIN".
	// Envoy's route match case_sensitive: false, nginx's "location ~*".
	// Non-ASCII letters are compared byte for byte.
	CaseInsensitive bool
	// Target is what the caller routes to (an upstream group).
	Target T

	match string // PathPrefix as paths are matched (MatchPrefix)
}

// Matches reports whether the rule's path prefix matches p, a path as
// MatchPath returns it.
func (r *Rule[T]) Matches(p string) bool {
	if r.CaseInsensitive {
		return asciifold.HasPrefix(p, r.match)
	}
	return strings.HasPrefix(p, r.match)
}

// Table is an immutable routing table.
type Table[T any] struct {
	exact    map[string]*hostRules[T]
	wildcard map[string]*hostRules[T] // key: ".example.com"
	any      *hostRules[T]
	size     int
}

type hostRules[T any] struct {
	rules []*Rule[T] // longest prefix first
}

// New builds a table. It refuses invalid host patterns and two rules with
// the same host and path prefix, or prefixes that differ only in case when
// either rule is CaseInsensitive (a path would match both, and which one
// routed it would be left to their order).
func New[T any](rules []Rule[T]) (*Table[T], error) {
	t := &Table[T]{exact: map[string]*hostRules[T]{}, wildcard: map[string]*hostRules[T]{}}
	seen := map[[2]string]int{}
	type folded struct {
		i  int
		ci bool
	}
	seenFold := map[[2]string]folded{}
	for i := range rules {
		r := rules[i]
		host, err := normalizePattern(r.Host)
		if err != nil {
			return nil, fmt.Errorf("route: rule %d: %w", i, err)
		}
		if err := CheckPathPrefix(r.PathPrefix); err != nil {
			return nil, fmt.Errorf("route: rule %d: %w", i, err)
		}
		if r.PathPrefix == "" {
			r.PathPrefix = "/"
		}
		r.Host, r.match = host, MatchPrefix(r.PathPrefix)
		k := [2]string{host, r.PathPrefix}
		if j, dup := seen[k]; dup {
			return nil, fmt.Errorf("route: rule %d duplicates rule %d (host %q, path prefix %q)", i, j, host, r.PathPrefix)
		}
		seen[k] = i
		fk := [2]string{host, asciifold.Lower(r.match)}
		if f, ok := seenFold[fk]; ok && (f.ci || r.CaseInsensitive) {
			return nil, fmt.Errorf("route: rule %d duplicates rule %d but for case, and one of them is case-insensitive (host %q, path prefix %q)", i, f.i, host, r.PathPrefix)
		}
		if _, ok := seenFold[fk]; !ok {
			seenFold[fk] = folded{i: i, ci: r.CaseInsensitive}
		}
		t.bucket(host).rules = append(t.bucket(host).rules, &r)
		t.size++
	}
	for _, hr := range t.all() {
		sort.SliceStable(hr.rules, func(a, b int) bool { return len(hr.rules[a].match) > len(hr.rules[b].match) })
	}
	return t, nil
}

func (t *Table[T]) bucket(host string) *hostRules[T] {
	m, key := t.exact, host
	switch {
	case host == "*":
		if t.any == nil {
			t.any = &hostRules[T]{}
		}
		return t.any
	case strings.HasPrefix(host, "*."):
		m, key = t.wildcard, host[1:]
	}
	hr := m[key]
	if hr == nil {
		hr = &hostRules[T]{}
		m[key] = hr
	}
	return hr
}

func (t *Table[T]) all() []*hostRules[T] {
	var out []*hostRules[T]
	for _, hr := range t.exact {
		out = append(out, hr)
	}
	for _, hr := range t.wildcard {
		out = append(out, hr)
	}
	if t.any != nil {
		out = append(out, t.any)
	}
	return out
}

// Len returns the number of rules.
func (t *Table[T]) Len() int { return t.size }

// CheckHostPattern returns nil when New accepts h as a Rule's Host: a
// name, "*.name", or "*" / "" (any host). Config parsers call it so that
// the grammar lives here only.
func CheckHostPattern(h string) error {
	_, err := normalizePattern(h)
	return err
}

// CheckPathPrefix returns nil when New accepts p as a Rule's PathPrefix:
// "" (meaning "/") or a path starting with "/".
func CheckPathPrefix(p string) error {
	if p != "" && p[0] != '/' {
		return fmt.Errorf("path prefix %q must start with /", p)
	}
	return nil
}

// PatternKey returns the form of a valid host pattern under which New
// finds two rules the same ("" and "*" alike, no case, no trailing dot).
func PatternKey(h string) string {
	k, _ := normalizePattern(h)
	return k
}

func normalizePattern(h string) (string, error) {
	if strings.HasSuffix(h, "*.") {
		return "", fmt.Errorf("invalid host pattern %q (want a name, *.name or *)", h)
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || h == "*" {
		return "*", nil
	}
	if !validName(strings.TrimPrefix(h, "*.")) {
		return "", fmt.Errorf("invalid host pattern %q (want a name, *.name or *)", h)
	}
	return h, nil
}

// validName reports a lower-case host name: dot-separated labels of 1 to
// 63 letters, digits, '-' and '_' (seen in internal names), not starting
// or ending with '-', 253 bytes at most. An IPv4 literal is such a name;
// a pattern that can never equal a Host header (spaces, commas, ports) is
// refused rather than left to match nothing.
func validName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Match returns the rule for host (a Host header value, port allowed) and
// path (the request path without query), or false when none matches.
func (t *Table[T]) Match(host, p string) (*Rule[T], bool) {
	hr := t.hostRules(NormalizeHost(host))
	if hr == nil {
		return nil, false
	}
	p = MatchPath(p)
	for _, r := range hr.rules {
		if r.Matches(p) {
			return r, true
		}
	}
	return nil, false
}

func (t *Table[T]) hostRules(host string) *hostRules[T] {
	if hr := t.exact[host]; hr != nil {
		return hr
	}
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			if hr := t.wildcard[host[i:]]; hr != nil {
				return hr
			}
		}
	}
	return t.any
}

// NormalizeHost lower-cases host and strips a port and a trailing dot. It
// allocates only when host has upper-case letters.
func NormalizeHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// CleanPath normalises a request path (without query) the way the proxy
// forwards it and, with MatchPath's one more step, matches it, so that
// spellings an origin treats as the same path cannot dodge a rule (RFC
// 3986 §6.2.2):
//
//   - a percent-escape of an unreserved character (ALPHA, DIGIT, '-', '.',
//     '_', '~'; §2.3) is decoded, so "/%73mall" is "/small"; every other
//     escape, "%2F", "%25" and "%00" among them, stays encoded with its hex
//     upper-cased (§6.2.2.1), as decoding it would change the path's
//     structure or meaning. A '%' not followed by two hex digits is kept as
//     it is;
//   - dot segments are removed, "%2e%2e" included, and runs of slashes are
//     merged; a path ending in a slash, "." or ".." keeps its trailing
//     slash (§5.2.4), so "/admin/." still matches "/admin/".
//
// A path that needs none of this is returned as is, without allocating.
// A path not starting with '/' becomes "/". CleanPath(CleanPath(p)) is
// CleanPath(p).
func CleanPath(p string) string {
	if p == "" || p[0] != '/' {
		return "/"
	}
	if strings.IndexByte(p, '%') >= 0 {
		p = normalizeEscapes(p)
	}
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p
	}
	c := path.Clean(p)
	if c != "/" && (strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")) {
		c += "/"
	}
	return c
}

// MatchPath is the form of a request path (without query) that rules
// match: CleanPath's, with what common origins read differently from its
// bytes read as they read it, and the dot segments and slash runs that
// reveals removed too:
//
//   - a segment's path parameters, from a ';' to the segment's end, are
//     dropped, as Tomcat and Jetty (and the Java frameworks on them) drop
//     them before they route: "/x/..;/admin" is "/admin" to them, and
//     "/api;v=1/login" is "/api/login";
//   - every encoded slash ("%2F") is a slash, as Go's URL.Path, WSGI's
//     PATH_INFO and nginx read it;
//   - every backslash, raw or encoded ('\', "%5C"), is a slash, as IIS
//     and ASP.NET read it: "/api\login" is "/api/login" to them.
//
// CleanPath keeps both, and the proxy forwards (and keys the cache by) the
// path so, since an origin may tell "/a%2Fb" from "/a/b"; but matched on
// CleanPath alone, a rule for "/api/login" was dodged by "/api%2Flogin" or
// "/x/..;/api/login", which such an origin served as "/api/login", and a
// caching route for "/static/" took "/static/..;/account" (cache
// deception). Matched so, a request meets the rules of the path it may
// reach; an origin that reads it otherwise gets it as before. Where the
// readings part ways on which page is meant, no one path can be matched:
// the proxy refuses a parameter that hides a slash or sits on a dot
// segment ("/x/..;/admin"), and an encoded slash that bounds a dot
// segment ("/x/..%2Fadmin", "/x/..\admin"), and a dot or slash spelt
// "%uNNNN" as IIS reads it ("/x/%u002e%u002e/admin"), before it routes
// (h1.ParamHidesSlash, h1.ParamOnDotSegment, h1.SlashHidesDotSegment,
// h1.PercentUHidesPathChar). It
// allocates only when p needs CleanPath to, or holds "%2F", "%5C", '\'
// or ';'. MatchPath(MatchPath(p)) is MatchPath(p).
func MatchPath(p string) string {
	p = CleanPath(p)
	if strings.IndexByte(p, ';') < 0 && !strings.Contains(p, "%2F") && !strings.Contains(p, "%5C") && strings.IndexByte(p, '\\') < 0 {
		return p
	}
	// Parameters first, as Tomcat drops them before it decodes. A '/' in
	// place of an escape makes no new escape: it is no hex digit.
	return CleanPath(slashes.Replace(dropParams(p)))
}

// slashes reads what MatchPath takes for a slash as one ('/').
var slashes = strings.NewReplacer("%2F", "/", "%5C", "/", "\\", "/")

// dropParams removes from each segment of p its path parameters: from its
// first ';' to the segment's end.
func dropParams(p string) string {
	if strings.IndexByte(p, ';') < 0 {
		return p
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); {
		if p[i] != ';' {
			b = append(b, p[i])
			i++
			continue
		}
		for i < len(p) && p[i] != '/' {
			i++
		}
	}
	return string(b)
}

// MatchPrefix is the form of a rule's path prefix that MatchPath's paths
// are matched against: its escapes as CleanPath writes them, path
// parameters dropped and encoded slashes and backslashes read as slashes, so that a prefix
// written with "%2F" still matches the paths it matched before. Dot
// segments and slash runs are left as they are: a prefix is no path, and
// "/a/.." is not "/".
func MatchPrefix(prefix string) string {
	if strings.IndexByte(prefix, '%') < 0 && strings.IndexByte(prefix, ';') < 0 && strings.IndexByte(prefix, '\\') < 0 {
		return prefix
	}
	return slashes.Replace(dropParams(normalizeEscapes(prefix)))
}

// normalizeEscapes decodes the percent-escapes of unreserved characters in
// p and upper-cases the hex of the others. It allocates only when that
// changes p.
func normalizeEscapes(p string) string {
	var b []byte        // the result; nil while it is p[:i]
	var last, prev byte // the result's last two bytes
	for i := 0; i < len(p); i++ {
		var r [3]byte
		out := r[:1]
		r[0] = p[i]
		if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			// A decoded hex digit after a stray '%' ("%%34%31") would
			// make a new escape ("%41") that a second decoding reads as
			// another character: it stays encoded.
			c := unhex(p[i+1])<<4 | unhex(p[i+2])
			stray := last == '%' || prev == '%' && isHex(last)
			if unreserved(c) && !(stray && isHex(c)) {
				r[0] = c
			} else {
				out = r[:3]
				r[1], r[2] = upperHex(p[i+1]), upperHex(p[i+2])
			}
			if b == nil && string(out) != p[i:i+3] {
				b = append(make([]byte, 0, len(p)), p[:i]...)
			}
			i += 2
		}
		if b != nil {
			b = append(b, out...)
		}
		if len(out) == 3 {
			prev, last = out[1], out[2]
		} else {
			prev, last = last, out[0]
		}
	}
	if b == nil {
		return p
	}
	return string(b)
}

// unreserved reports an unreserved character of RFC 3986 §2.3.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}
