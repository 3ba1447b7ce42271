package proxy

import (
	"fmt"
	"io"
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

// TestCacheRequestBodyNotStored: a GET's body has no defined meaning (RFC
// 9110 §9.3.1) and no part in the cache key, yet it goes to the origin,
// which may answer from it. Such a response is not stored: it was, and a
// client's "fat GET" set the response every other client got.
func TestCacheRequestBodyNotStored(t *testing.T) {
	s := startCacheSetup(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "body=%q", b)
	})
	for _, req := range []string{
		"GET /f HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil",
		"GET /f HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nevil\r\n0\r\n\r\n",
	} {
		resp, body := rawRequest(t, s.addr, req)
		if body != `body="evil"` {
			t.Fatalf("the attacker's request: %d %q", resp.StatusCode, body)
		}
		if got := cacheStatusOf(resp); got != "fwd=miss; fwd-status=200; detail=request-body" {
			t.Fatalf("the attacker's request: Cache-Status %q", got)
		}
	}
	resp, body := rawRequest(t, s.addr, "GET /f HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	if body != `body=""` {
		t.Fatalf("a plain GET got %q (%s), stored from another client's request body", body, resp.Header.Get("Cache-Status"))
	}
	// A stored response still answers a GET with a body.
	resp, body = rawRequest(t, s.addr, "GET /f HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil")
	if body != `body=""` || cacheStatusOf(resp) != "hit; ttl=60" {
		t.Fatalf("a GET with a body after the store: %q %q", body, cacheStatusOf(resp))
	}
}
