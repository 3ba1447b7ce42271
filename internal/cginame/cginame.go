// Package cginame compares HTTP field names as CGI-style origins (PHP,
// WSGI, Rack) read them: HTTP_X_TENANT is "X-Tenant", "x-tenant" and
// "X_Tenant" alike; and query parameter and cookie names as some origin
// reads them (ParamName: "API_KEY", "api_key[]", "api.key" may all be
// api_key). The cache (keys, Vary variants, the override check) and the
// rate limiter's keys use it, so that a client cannot spell a name the
// origin reads past either.
package cginame

// Same reports whether field names a and b, of one length, are one name
// to a CGI-style origin: equal but for case and '_' for '-'.
func Same(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if fold(a[i]) != fold(b[i]) {
			return false
		}
	}
	return true
}

func fold(c byte) byte {
	switch {
	case c == '_':
		return '-'
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	}
	return c
}
