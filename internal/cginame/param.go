package cginame

import (
	"net/url"
	"strings"
	"unicode"
)

// ParamName returns the form of a query parameter's or a cookie's name
// that origins may read as the same name: unescaped ("i%64": PHP decodes
// cookie names too, '+' as a space), trimmed ("%20id", "lang =de": PHP
// drops leading blanks, Node's cookie parser trims), without an array
// suffix ("id[]", "id[0]": PHP, Rack), lower case ("ID": ASP.NET's names
// ignore case), and '.' and ' ' as '_' (PHP reads "user.id" as user_id).
// Two names of one form may be one name to some origin; the cache keys
// all of them and the rate limiter finds a key so spelt.
func ParamName(name string) string {
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	name = strings.TrimSpace(name)
	if i := strings.IndexByte(name, '['); i > 0 {
		name = name[:i]
	}
	return strings.Map(func(r rune) rune {
		if r == '.' || r == ' ' {
			return '_'
		}
		return unicode.ToLower(r)
	}, name)
}

// SameParam reports whether raw, a name as a request spells it, has the
// form form (ParamName's). It allocates only for a name with an escape, a
// '+' or a byte beyond ASCII.
func SameParam(raw, form string) bool {
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c == '%' || c == '+' || c >= 0x80 {
			return ParamName(raw) == form
		}
	}
	raw = strings.TrimSpace(raw)
	if i := strings.IndexByte(raw, '['); i > 0 {
		raw = raw[:i]
	}
	if len(raw) != len(form) {
		return false
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '.' || c == ' ':
			c = '_'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != form[i] {
			return false
		}
	}
	return true
}
