package proxy

import (
	"fmt"
	"net/http"
	"testing"
)

// The cache-poisoning tests: a client's request must never make the cache
// store, under a key other clients use, a response the origin made from
// something the key does not hold.

// TestCacheConnectionNamedKeyField: a field the request's Connection
// names is removed before the request goes upstream (RFC 9110 §7.6.1), so
// the cache key and the Vary match must not use it either. They did: a
// client sending "X-Tenant: a" with "Connection: X-Tenant" had the
// origin's answer for no tenant stored under tenant a's key (and, with
// "Vary: X-Tenant", as tenant a's variant), served to every tenant-a
// client after it.
func TestCacheConnectionNamedKeyField(t *testing.T) {
	cases := []struct {
		name string
		cc   *CacheConfig
		vary string
	}{
		{"key header", &CacheConfig{Key: CacheKeySpec{Headers: []string{"X-Tenant"}}}, ""},
		{"vary", nil, "X-Tenant"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startCacheSetup(t, tc.cc, func(n int64, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				if tc.vary != "" {
					w.Header().Set("Vary", tc.vary)
				}
				fmt.Fprintf(w, "tenant=%q", r.Header.Get("X-Tenant"))
			})
			resp, body := rawRequest(t, s.addr, "GET /t HTTP/1.1\r\nHost: example.com\r\n"+
				"X-Tenant: a\r\nConnection: close, X-Tenant\r\n\r\n")
			if body != `tenant=""` {
				t.Fatalf("the attacker's request: %d %q (X-Tenant should not reach the origin)", resp.StatusCode, body)
			}
			resp, body = rawRequest(t, s.addr, "GET /t HTTP/1.1\r\nHost: example.com\r\nX-Tenant: a\r\nConnection: close\r\n\r\n")
			if body != `tenant="a"` {
				t.Fatalf("tenant a got %q (%s), the answer made without its X-Tenant", body, resp.Header.Get("Cache-Status"))
			}
		})
	}
}
