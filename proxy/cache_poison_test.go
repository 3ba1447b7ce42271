package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
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

// TestCacheKeyQueryRepeatedName: the key's query selection puts the kept
// parameters in name order, but a name given more than once keeps its
// values in the order sent: an origin reads the first. Sorting whole
// "name=value" pairs gave "?id=2&id=1" and "?id=1&id=2" one key, so the
// first asked filled the other's answer.
func TestCacheKeyQueryRepeatedName(t *testing.T) {
	s := startCacheSetup(t, &CacheConfig{Key: CacheKeySpec{Query: []string{"id", "a"}}}, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "id=%s", r.URL.Query().Get("id"))
	})
	c := h1Client()
	if _, body := s.do(t, c, "GET", "/q?id=2&x=1&id=1", nil); body != "id=2" {
		t.Fatalf("first: %q", body)
	}
	if resp, body := s.do(t, c, "GET", "/q?id=1&id=2", nil); body != "id=1" {
		t.Fatalf("?id=1&id=2 got %q (%s), the answer to ?id=2&id=1", body, cacheStatusOf(resp))
	}
	// A name spelt with an escape is the same name to the origin.
	if _, body := s.do(t, c, "GET", "/q?i%64=3&id=4", nil); body != "id=3" {
		t.Fatalf("?i%%64=3&id=4: %q", body)
	}
	if resp, body := s.do(t, c, "GET", "/q?id=4&i%64=3", nil); body != "id=4" {
		t.Fatalf("?id=4&i%%64=3 got %q (%s), the answer to ?i%%64=3&id=4", body, cacheStatusOf(resp))
	}
	// Names still sort, the values of each in their order: one key.
	if _, body := s.do(t, c, "GET", "/q?id=5&a=0&id=6", nil); body != "id=5" {
		t.Fatalf("?id=5&a=0&id=6: %q", body)
	}
	if resp, body := s.do(t, c, "GET", "/q?a=0&id=5&id=6", nil); body != "id=5" || cacheStatusOf(resp) != "hit; ttl=60" {
		t.Fatalf("?a=0&id=5&id=6: %q %q, want the key of ?id=5&a=0&id=6", body, cacheStatusOf(resp))
	}
}

// TestCacheKeyFieldSpellings: a key's header and cookie additions give
// each request spelling an origin may read differently a key of its own.
// Two X-Tenant lines and one line of the same values were one key, though
// an origin reading the first line sees "a", not "a,b"; the first lang
// cookie was the key's though origins that keep the last (Python's) read
// "fr" from "lang=en; lang=fr"; and "lang =fr", read as lang by origins
// that trim, was no lang at all, so it filled the answer every client
// without the cookie got.
func TestCacheKeyFieldSpellings(t *testing.T) {
	s := startCacheSetup(t, &CacheConfig{Key: CacheKeySpec{Headers: []string{"X-Tenant"}, Cookies: []string{"lang"}}},
		func(n int64, w http.ResponseWriter, r *http.Request) {
			lang := ""
			for _, line := range r.Header["Cookie"] { // the last lang wins, names trimmed
				for _, c := range strings.Split(line, ";") {
					if k, v, ok := strings.Cut(c, "="); ok && strings.TrimSpace(k) == "lang" {
						lang = strings.TrimSpace(v)
					}
				}
			}
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprintf(w, "tenant=%s lang=%s", r.Header.Get("X-Tenant"), lang)
		})
	steps := []struct{ fields, want string }{
		{"X-Tenant: a\r\nX-Tenant: b\r\n", "tenant=a lang="},
		{"X-Tenant: a,b\r\n", "tenant=a,b lang="},
		{"Cookie: lang=en; lang=fr\r\n", "tenant= lang=fr"},
		{"Cookie: lang=en\r\n", "tenant= lang=en"},
		{"Cookie: lang =de\r\n", "tenant= lang=de"},
		{"", "tenant= lang="},
	}
	for _, st := range steps {
		resp, body := rawRequest(t, s.addr, "GET /k HTTP/1.1\r\nHost: example.com\r\n"+st.fields+"Connection: close\r\n\r\n")
		if body != st.want {
			t.Fatalf("%q: got %q (%s), want %q", st.fields, body, resp.Header.Get("Cache-Status"), st.want)
		}
	}
}

// TestCacheOverrideFieldsNotStored: fields that frameworks read as the
// request's real URL or method (X-Original-URL and X-Rewrite-URL in IIS,
// Symfony and Zend; X-HTTP-Method-Override and its spellings in many) go
// to the origin but are in no key. An origin that honours them answered
// another page (or method) under this URL's key, and every other client
// got it from the cache. Such a response is not stored, as a GET with a
// body is not; a stored response still answers such a request.
func TestCacheOverrideFieldsNotStored(t *testing.T) {
	// The '_' spellings too: PHP (Symfony, Zend) reads X_Original_URL as
	// HTTP_X_ORIGINAL_URL, as it reads X-Original-URL; they were stored.
	for _, field := range []string{"X-Original-URL", "X-Rewrite-URL", "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override",
		"X_Original_URL", "x_http_method_override"} {
		t.Run(field, func(t *testing.T) {
			s := startCacheSetup(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
				get := func(f string) string { // as a CGI-style origin reads fields
					for k, v := range r.Header {
						if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), f) {
							return v[0]
						}
					}
					return ""
				}
				page := r.URL.Path
				for _, f := range []string{"X-Original-URL", "X-Rewrite-URL"} {
					if v := get(f); v != "" {
						page = v // as IIS's URL rewrite and Symfony read it
					}
				}
				method := r.Method
				for _, f := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
					if v := get(f); v != "" {
						method = v
					}
				}
				w.Header().Set("Cache-Control", "max-age=60")
				fmt.Fprintf(w, "%s %s", method, page)
			})
			c := h1Client()
			resp, body := s.do(t, h2cClient(), "GET", "/home", h(field, "/admin")) // HTTP/2's lower-case names too
			if got := cacheStatusOf(resp); got != "fwd=miss; fwd-status=200; detail=request-override" {
				t.Fatalf("the attacker's request: %q, Cache-Status %q", body, got)
			}
			if _, body := s.do(t, c, "GET", "/home", nil); body != "GET /home" {
				t.Fatalf("a plain GET got %q, stored from the attacker's request", body)
			}
			if resp, body := s.do(t, c, "GET", "/home", h(field, "/admin")); body != "GET /home" || !strings.HasPrefix(cacheStatusOf(resp), "hit") {
				t.Fatalf("a stored response does not answer a request with %s: %q %q", field, body, cacheStatusOf(resp))
			}
		})
	}
}

// TestCacheOverrideFieldsNotRefreshed: a stale-while-revalidate hit
// starts the background refresh from the request that found it stale; an
// override field of that request does not go along, or the refresh would
// store the page it names for every client.
func TestCacheOverrideFieldsNotRefreshed(t *testing.T) {
	s := startCacheSetup(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
		page := r.URL.Path
		if v := r.Header.Get("X-Original-URL"); v != "" {
			page = v
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		fmt.Fprintf(w, "v%d %s", n, page)
	})
	c := h1Client()
	s.do(t, c, "GET", "/home", nil)
	s.fc.Advance(20 * time.Second)
	if resp, body := s.do(t, c, "GET", "/home", h("X-Original-URL", "/admin")); body != "v1 /home" || !strings.Contains(cacheStatusOf(resp), "stale-while-revalidate") {
		t.Fatalf("the attacker's request: %q (%s)", body, cacheStatusOf(resp))
	}
	waitFor(t, 10*time.Second, "the refreshed page stored", func() bool {
		resp, _ := s.do(t, c, "GET", "/home", nil)
		return cacheStatusOf(resp) == "hit; ttl=10"
	})
	if _, body := s.do(t, c, "GET", "/home", nil); body != "v2 /home" {
		t.Fatalf("after the refresh the cache serves %q", body)
	}
	// Nor does a fill run for another node (a shared route's owner).
	ctx := context.Background()
	key := "GET http://fill.test/f"
	f, _, _ := s.store.Lock(ctx, key, 0)
	s.srv.FillCache(ctx, CacheFill{Request: &cache.Request{Method: "GET", Scheme: "http", Host: "fill.test", URI: "/f",
		Header: http.Header{"X-Original-Url": {"/admin"}}}, Key: key, VariantKey: key, Fill: f, Store: s.store})
	o, _ := s.store.Lookup(ctx, key)
	if o == nil {
		t.Fatal("FillCache stored nothing")
	}
	r, _ := o.NewReader(ctx, 0)
	defer r.Close()
	if b, _ := io.ReadAll(r); !strings.HasSuffix(string(b), " /f") {
		t.Fatalf("FillCache stored %q", b)
	}
}

// clientFrom is an HTTP/1.1 client whose connections come from the
// loopback address ip; it skips the test where that address cannot be
// bound (only Linux routes all of 127/8 to lo by default).
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot use %s as a client address: %v", ip, err)
	}
	l.Close()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DisableCompression: true, DialContext: d.DialContext}, Timeout: 30 * time.Second}
}

// TestCacheVaryForwardedForNotStored: an origin that answers each client
// address its own page and says so with "Vary: X-Forwarded-For" saw that
// field as the proxy wrote it (the client's address), but the variant was
// selected by the request as it arrived, where an untrusted client's
// X-Forwarded-For is removed: the page made for the first client was
// stored as the variant of "no X-Forwarded-For" and served to every other
// client (127.0.0.3 got "for 127.0.0.2", a hit). Such a response is not
// stored (detail=vary-client), in any spelling of the field.
func TestCacheVaryForwardedForNotStored(t *testing.T) {
	for _, vary := range []string{"X-Forwarded-For", "accept-encoding, x_forwarded_for"} {
		t.Run(vary, func(t *testing.T) {
			s := startCacheSetup(t, nil, func(_ int64, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Vary", vary)
				fmt.Fprintf(w, "for %s", r.Header.Get("X-Forwarded-For"))
			})
			for i, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.2"} {
				resp, body := s.do(t, clientFrom(t, ip), "GET", "/a", nil)
				if body != "for "+ip {
					t.Fatalf("request %d from %s got %q (Cache-Status %q)", i, ip, body, resp.Header.Get("Cache-Status"))
				}
				if n := s.origin.n.Load(); n != int64(i+1) {
					t.Fatalf("request %d: the origin saw %d requests, want %d", i, n, i+1)
				}
				if got := cacheStatusOf(resp); i == 0 && got != "fwd=miss; fwd-status=200; detail=vary-client" {
					t.Fatalf("first request: Cache-Status %q", got)
				}
			}
		})
	}
}

// TestCacheKeyQueryNameSpellings: with a key that keeps only some query
// parameters, a spelling of a kept name that an origin reads as that
// name must not be dropped from the key (parameter cloaking). Each was:
// "?ID=evil" (ASP.NET reads names in any case), "?x=1;id=evil" (Rack 2
// and other origins that split on ';'), "?%20id=evil" (PHP drops a
// name's leading spaces) and "?id[]=evil" (PHP: id an array) had the
// key of the page without id, so the page the origin made from "evil"
// was served to every client asking for it.
func TestCacheKeyQueryNameSpellings(t *testing.T) {
	for _, q := range []string{"ID=evil", "x=1;id=evil", "%20id=evil", "id%20=evil", "id[]=evil", "Id%5B0%5D=evil"} {
		t.Run(q, func(t *testing.T) {
			s := startCacheSetup(t, &CacheConfig{Key: CacheKeySpec{Query: []string{"id"}}}, func(_ int64, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				// An origin that reads every spelling above as id.
				id := "none"
				for _, p := range strings.FieldsFunc(r.URL.RawQuery, func(c rune) bool { return c == '&' || c == ';' }) {
					name, v, _ := strings.Cut(p, "=")
					name, _ = url.QueryUnescape(name)
					name, _, _ = strings.Cut(strings.ToLower(strings.TrimSpace(name)), "[")
					if name == "id" {
						id = v
					}
				}
				fmt.Fprintf(w, "id=%s", id)
			})
			c := h1Client()
			if _, body := s.do(t, c, "GET", "/p?"+q, nil); body != "id=evil" {
				t.Fatalf("the cloaked request: %q", body)
			}
			if resp, body := s.do(t, c, "GET", "/p", nil); body != "id=none" {
				t.Fatalf("/p got %q (%s), the answer to ?%s", body, cacheStatusOf(resp), q)
			}
		})
	}
}

// TestCacheKeyCookieNameSpellings: a key's cookie addition holds every
// spelling of the cookie's name an origin reads as it: "LANG" (ASP.NET's
// cookie names ignore case), "l%61ng" and "lang[]" (PHP decodes cookie
// names and reads brackets as an array), " lang" after a ';' with a tab.
// Each was no lang at all to the key, so the page the origin made for
// "fr" was stored as the one for no lang and served to every client.
func TestCacheKeyCookieNameSpellings(t *testing.T) {
	for _, cookie := range []string{"LANG=fr", "l%61ng=fr", "lang[]=fr", "a=1;\tlang=fr"} {
		t.Run(cookie, func(t *testing.T) {
			s := startCacheSetup(t, &CacheConfig{Key: CacheKeySpec{Cookies: []string{"lang"}}}, func(_ int64, w http.ResponseWriter, r *http.Request) {
				lang := "none"
				for _, line := range r.Header["Cookie"] {
					for _, c := range strings.Split(line, ";") {
						name, v, _ := strings.Cut(c, "=")
						name, _ = url.QueryUnescape(name)
						if name, _, _ = strings.Cut(strings.ToLower(strings.TrimSpace(name)), "["); name == "lang" {
							lang = v
						}
					}
				}
				w.Header().Set("Cache-Control", "max-age=60")
				fmt.Fprintf(w, "lang=%s", lang)
			})
			c := h1Client()
			if _, body := s.do(t, c, "GET", "/p", http.Header{"Cookie": {cookie}}); body != "lang=fr" {
				t.Fatalf("the cookie's request: %q", body)
			}
			if resp, body := s.do(t, c, "GET", "/p", nil); body != "lang=none" {
				t.Fatalf("/p got %q (%s), the answer to Cookie: %s", body, cacheStatusOf(resp), cookie)
			}
		})
	}
}

// TestCacheKeyHeaderNameSpellings: a key's header addition holds the
// field's '_' spelling too: CGI-style origins (PHP, WSGI, Rack) read
// "X_Tenant" and "X-Tenant" both as HTTP_X_TENANT, and the proxy passes
// both on. "X_Tenant: evil" was no tenant to the key, so the page the
// origin made for tenant "evil" was served to every client without one.
func TestCacheKeyHeaderNameSpellings(t *testing.T) {
	s := startCacheSetup(t, &CacheConfig{Key: CacheKeySpec{Headers: []string{"X-Tenant"}}}, func(_ int64, w http.ResponseWriter, r *http.Request) {
		tenant := "none"
		for k, v := range r.Header {
			if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "X-Tenant") {
				tenant = v[0]
			}
		}
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "tenant=%s", tenant)
	})
	for _, st := range []struct{ fields, want string }{
		{"X_Tenant: evil\r\n", "tenant=evil"},
		{"", "tenant=none"},
		{"X-Tenant: a\r\n", "tenant=a"},
		{"x_tenant: b\r\n", "tenant=b"},
		{"X-Tenant: a\r\n", "tenant=a"},
	} {
		resp, body := rawRequest(t, s.addr, "GET /k HTTP/1.1\r\nHost: example.com\r\n"+st.fields+"Connection: close\r\n\r\n")
		if body != st.want {
			t.Fatalf("%q: got %q (%s), want %q", st.fields, body, resp.Header.Get("Cache-Status"), st.want)
		}
	}
}

// TestCacheVaryFieldSpellings: a Vary variant is chosen by the field's
// '_' spelling too, for the same CGI-style origins: with "Vary: X-Tenant",
// "X_Tenant: evil" selected the variant of no tenant, and the page made
// for "evil" was served to every client without one.
func TestCacheVaryFieldSpellings(t *testing.T) {
	s := startCacheSetup(t, nil, func(_ int64, w http.ResponseWriter, r *http.Request) {
		tenant := "none"
		for k, v := range r.Header {
			if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "X-Tenant") {
				tenant = v[0]
			}
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "X-Tenant")
		fmt.Fprintf(w, "tenant=%s", tenant)
	})
	for _, st := range []struct{ fields, want string }{
		{"X_Tenant: evil\r\n", "tenant=evil"},
		{"", "tenant=none"},
		{"X-Tenant: a\r\n", "tenant=a"},
		{"x_tenant: b\r\n", "tenant=b"},
		{"X-Tenant: a\r\n", "tenant=a"},
		{"X_Tenant: evil\r\n", "tenant=evil"},
	} {
		resp, body := rawRequest(t, s.addr, "GET /v HTTP/1.1\r\nHost: example.com\r\n"+st.fields+"Connection: close\r\n\r\n")
		if body != st.want {
			t.Fatalf("%q: got %q (%s), want %q", st.fields, body, resp.Header.Get("Cache-Status"), st.want)
		}
	}
}

// TestCacheConnectionNamedFieldNotStored: an origin answering
// "Connection: Vary" with "Vary: Cookie" (or naming Cache-Control or
// Set-Cookie) had that field removed as hop-by-hop before the cache
// decided: the page made for one cookie was stored without its Vary and
// served to every other cookie. Such a response is not stored
// (detail=connection-named); each client gets the origin's own page.
func TestCacheConnectionNamedFieldNotStored(t *testing.T) {
	for _, named := range []string{"Vary", "keep-alive, vary", "Cache-Control"} {
		t.Run(named, func(t *testing.T) {
			s := startCacheSetup(t, nil, func(_ int64, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Vary", "Cookie")
				w.Header().Set("Connection", named)
				fmt.Fprintf(w, "for %s", r.Header.Get("Cookie"))
			})
			for i, who := range []string{"a", "b", "a"} {
				resp, body := s.do(t, http.DefaultClient, "GET", "/a", http.Header{"Cookie": {"u=" + who}})
				if body != "for u="+who {
					t.Fatalf("request %d with cookie %s got %q (Cache-Status %q)", i, who, body, resp.Header.Get("Cache-Status"))
				}
				if got := cacheStatusOf(resp); i == 0 && got != "fwd=miss; fwd-status=200; detail=connection-named" {
					t.Fatalf("first request: Cache-Status %q", got)
				}
			}
		})
	}
}

// TestCacheVaryValueSpellings: a Vary variant is chosen by the field's
// lines exactly as they came. The variant key used to split them at commas
// and join the items again, dropping empty ones and the blanks around
// them: "Origin: https://app.example," and an empty Origin line before
// "Origin: https://app.example" selected the variant of
// "Origin: https://app.example", while an origin that reads the first line
// as it is (Go's Header.Get, Python's headers.get, every CORS allow-list)
// answered them as another origin: without Access-Control-Allow-Origin,
// stored for every browser of app.example.
func TestCacheVaryValueSpellings(t *testing.T) {
	s := startCacheSetup(t, nil, func(_ int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Origin")
		fmt.Fprintf(w, "origin=%q", r.Header.Get("Origin"))
	})
	const app = "Origin: https://app.example\r\n"
	for _, st := range []struct{ fields, want string }{
		{"Origin: https://app.example,\r\n", `origin="https://app.example,"`},
		{app, `origin="https://app.example"`},
		{"Origin: \r\n" + app, `origin=""`},
		{app + "Origin: https://x.example\r\n", `origin="https://app.example"`},
		{"Origin: https://app.example, https://x.example\r\n", `origin="https://app.example, https://x.example"`},
		{"Origin: https://app.example,https://x.example\r\n", `origin="https://app.example,https://x.example"`},
		{"", `origin=""`},
		{app, `origin="https://app.example"`},
	} {
		resp, body := rawRequest(t, s.addr, "GET /cors HTTP/1.1\r\nHost: example.com\r\n"+st.fields+"Connection: close\r\n\r\n")
		if body != st.want {
			t.Fatalf("%q: got %s (%s), want %s", st.fields, body, resp.Header.Get("Cache-Status"), st.want)
		}
	}
}
