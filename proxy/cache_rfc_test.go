package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// cacheStep is one request of a cache table case, after advancing the
// fake clock.
type cacheStep struct {
	advance time.Duration
	method  string // default GET
	path    string // default /a
	header  http.Header
	status  int    // default 200
	body    string // "-": not checked
	cs      string // the Cache-Status parameters, by prefix
	origin  int64  // origin requests so far
	want    map[string]string
}

type cacheCase struct {
	section string
	cc      *CacheConfig
	origin  func(n int64, w http.ResponseWriter, r *http.Request)
	steps   []cacheStep
}

// h builds a header from key, value pairs.
func h(kv ...string) http.Header {
	out := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Add(kv[i], kv[i+1])
	}
	return out
}

// versioned answers body "v<n>" with the fields, ETag "v<n>", and 304 to
// a matching If-None-Match (the first version's tag while same is set).
func versioned(same bool, kv ...string) func(int64, http.ResponseWriter, *http.Request) {
	return func(n int64, w http.ResponseWriter, r *http.Request) {
		tag := fmt.Sprintf(`"v%d"`, n)
		if same {
			tag = `"v1"`
		}
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Set(kv[i], kv[i+1])
		}
		w.Header().Set("Etag", tag)
		w.Header().Set("X-Origin-N", fmt.Sprint(n))
		if r.Header.Get("If-None-Match") == tag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "v%d", n)
	}
}

func runCacheCase(t *testing.T, tc cacheCase) {
	s := startCacheSetup(t, tc.cc, tc.origin)
	c := h1Client()
	for i, st := range tc.steps {
		s.fc.Advance(st.advance)
		method, path, status := st.method, st.path, st.status
		if method == "" {
			method = http.MethodGet
		}
		if path == "" {
			path = "/a"
		}
		if status == 0 {
			status = 200
		}
		resp, body := s.do(t, c, method, path, st.header)
		where := fmt.Sprintf("step %d (%s %s)", i, method, path)
		if resp.StatusCode != status {
			t.Fatalf("%s: status %d, want %d (Cache-Status %q)", where, resp.StatusCode, status, resp.Header.Get("Cache-Status"))
		}
		if st.body != "-" && body != st.body {
			t.Fatalf("%s: body %q, want %q", where, body, st.body)
		}
		if got := cacheStatusOf(resp); !strings.HasPrefix(got, st.cs) {
			t.Fatalf("%s: Cache-Status %q, want prefix %q", where, got, st.cs)
		}
		if got := s.origin.n.Load(); got != st.origin {
			t.Fatalf("%s: origin saw %d requests, want %d", where, got, st.origin)
		}
		for k, v := range st.want {
			if got := resp.Header.Get(k); got != v && !(v == "*" && got != "") {
				t.Fatalf("%s: %s = %q, want %q", where, k, got, v)
			}
		}
	}
}

// TestCacheRFC9111 runs the engine's cache through one case per rule of
// RFC 9111 (and RFC 9110, 5861, 9211 where they apply), each naming its
// section.
func TestCacheRFC9111(t *testing.T) {
	for _, tc := range cacheCases() {
		t.Run(tc.section, func(t *testing.T) { runCacheCase(t, tc) })
	}
}

func cacheCases() []cacheCase {
	var all []cacheCase
	for _, group := range []func() []cacheCase{freshnessCases, storabilityCases, requestCases, varyValidationCases, invalidationCases, methodRangeCases, staleStatusKeyCases} {
		all = append(all, group()...)
	}
	return all
}

var maxAge60 = versioned(false, "Cache-Control", "max-age=60")

// freshnessCases: freshness and age (§4.2).
func freshnessCases() []cacheCase {
	return []cacheCase{
		{section: "§4.2.1 max-age: fresh hits, then stale goes to the origin", origin: maxAge60, steps: []cacheStep{
			{body: "v1", cs: "fwd=miss; fwd-status=200; stored", origin: 1},
			{advance: 59 * time.Second, body: "v1", cs: "hit; ttl=1", origin: 1},
			{advance: 2 * time.Second, body: "v2", cs: "fwd=stale; fwd-status=200; stored", origin: 2},
		}},
		{section: "§4.2.3 §5.1 every cached response carries its Age", origin: maxAge60, steps: []cacheStep{
			{body: "v1", origin: 1},
			{advance: 10 * time.Second, body: "v1", cs: "hit", origin: 1, want: map[string]string{"Age": "10"}},
		}},
		{section: "§4.2.3 an upstream Age counts in the current age", origin: versioned(false, "Cache-Control", "max-age=60", "Age", "50"), steps: []cacheStep{
			{body: "v1", origin: 1},
			{advance: 5 * time.Second, body: "v1", cs: "hit; ttl=5", origin: 1, want: map[string]string{"Age": "55"}},
			{advance: 6 * time.Second, body: "v2", cs: "fwd=stale", origin: 2},
		}},
		{section: "§4.2.1 Expires minus Date", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Expires", cacheT0.Add(30*time.Second).Format(http.TimeFormat))
			fmt.Fprintf(w, "v%d", n)
		}, steps: []cacheStep{
			{body: "v1", cs: "fwd=miss; fwd-status=200; stored", origin: 1},
			{advance: 29 * time.Second, body: "v1", cs: "hit", origin: 1},
			{advance: 2 * time.Second, body: "v2", origin: 2},
		}},
		{section: "§4.2.2 heuristic freshness from Last-Modified", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Last-Modified", cacheT0.Add(-10*time.Hour).Format(http.TimeFormat))
			fmt.Fprintf(w, "v%d", n)
		}, steps: []cacheStep{
			{body: "v1", cs: "fwd=miss; fwd-status=200; stored", origin: 1},
			{advance: 59 * time.Minute, body: "v1", cs: "hit", origin: 1},
		}},
	}
}

// storabilityCases: what is stored (§3, §3.5, §5.2.2).
func storabilityCases() []cacheCase {
	return []cacheCase{
		{section: "§5.2.2.5 no-store is never stored", origin: versioned(false, "Cache-Control", "no-store, max-age=60"), steps: []cacheStep{
			{body: "v1", cs: "fwd=miss; fwd-status=200; detail=no-store", origin: 1},
			{body: "v2", cs: "fwd=miss", origin: 2},
		}},
		{section: "§5.2.2.7 private is never stored by a shared cache", origin: versioned(false, "Cache-Control", "private, max-age=60"), steps: []cacheStep{
			{body: "v1", cs: "fwd=miss; fwd-status=200; detail=private", origin: 1},
			{body: "v2", origin: 2},
		}},
		{section: "§3.5 a response to Authorization is not stored without public", origin: maxAge60, steps: []cacheStep{
			{header: h("Authorization", "Bearer a"), body: "v1", cs: "fwd=miss; fwd-status=200; detail=authorization", origin: 1},
			{header: h("Authorization", "Bearer a"), body: "v2", origin: 2},
		}},
		{section: "§3.5 a response to Authorization with public is stored", origin: versioned(false, "Cache-Control", "public, max-age=60"), steps: []cacheStep{
			{header: h("Authorization", "Bearer a"), body: "v1", cs: "fwd=miss; fwd-status=200; stored", origin: 1},
			{header: h("Authorization", "Bearer b"), body: "v1", cs: "hit", origin: 1},
		}},
	}
}

// requestCases: request directives (§5.2.1).
func requestCases() []cacheCase {
	return []cacheCase{
		{section: "§5.2.1.4 request no-cache validates with the origin", origin: versioned(true, "Cache-Control", "max-age=60"), steps: []cacheStep{
			{body: "v1", origin: 1},
			{header: h("Cache-Control", "no-cache"), body: "v1", cs: "fwd=request; fwd-status=304", origin: 2},
		}},
		{section: "§5.2.2.4 RFC 9211 a response's own no-cache is validated as stale, not for the request", origin: versioned(true, "Cache-Control", "no-cache, max-age=60"), steps: []cacheStep{
			{body: "v1", cs: "fwd=miss; fwd-status=200; stored", origin: 1},
			{body: "v1", cs: "fwd=stale; fwd-status=304", origin: 2},
		}},
		{section: "§5.2.1.1 request max-age=0 goes to the origin", origin: maxAge60, steps: []cacheStep{
			{body: "v1", origin: 1},
			{advance: time.Second, header: h("Cache-Control", "max-age=0"), body: "v2", cs: "fwd=request; fwd-status=200; stored", origin: 2},
			{body: "v2", cs: "hit", origin: 2},
		}},
		{section: "§5.2.1.2 max-stale serves a stale response", origin: maxAge60, steps: []cacheStep{
			{body: "v1", origin: 1},
			{advance: 70 * time.Second, header: h("Cache-Control", "max-stale=30"), body: "v1", cs: "hit; ttl=-10; detail=max-stale", origin: 1},
		}},
		{section: "§5.2.2.2 must-revalidate: max-stale cannot serve it stale", origin: versioned(false, "Cache-Control", "max-age=60, must-revalidate"), steps: []cacheStep{
			{body: "v1", origin: 1},
			{advance: 70 * time.Second, header: h("Cache-Control", "max-stale"), body: "v2", cs: "fwd=stale", origin: 2},
		}},
		{section: "§5.2.1.7 only-if-cached without a stored response is 504", origin: maxAge60, steps: []cacheStep{
			{header: h("Cache-Control", "only-if-cached"), status: 504, body: "-", cs: "fwd=miss; detail=only-if-cached", origin: 0},
			{body: "v1", origin: 1},
			{header: h("Cache-Control", "only-if-cached"), body: "v1", cs: "hit", origin: 1},
		}},
	}
}

// varyValidationCases: Vary (§4.1) and validation (§4.3).
func varyValidationCases() []cacheCase {
	return []cacheCase{
		{section: "§4.1 Vary selects a stored response per request field values", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "Accept-Encoding")
			fmt.Fprintf(w, "%s-%d", r.Header.Get("Accept-Encoding"), n)
		}, steps: []cacheStep{
			{header: h("Accept-Encoding", "gzip"), body: "gzip-1", cs: "fwd=miss; fwd-status=200; stored", origin: 1},
			{header: h("Accept-Encoding", "br"), body: "br-2", cs: "fwd=vary-miss; fwd-status=200; stored", origin: 2},
			{header: h("Accept-Encoding", "gzip"), body: "gzip-1", cs: "hit", origin: 2},
			{header: h("Accept-Encoding", "br"), body: "br-2", cs: "hit", origin: 2},
			{body: "-3", cs: "fwd=vary-miss", origin: 3},
		}},
		{section: "§4.1 Vary: * never matches: not stored", origin: versioned(false, "Cache-Control", "max-age=60", "Vary", "*"), steps: []cacheStep{
			{body: "v1", cs: "fwd=miss; fwd-status=200; detail=vary-star", origin: 1},
			{body: "v2", origin: 2},
		}},
		{section: "§4.3.1 §4.3.3 §4.3.4 a stale response revalidated by 304 gets the 304's fields", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Etag", `"t"`)
			w.Header().Set("X-Seen", fmt.Sprint(n))
			if r.Header.Get("If-None-Match") == `"t"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "body")
		}, steps: []cacheStep{
			{body: "body", origin: 1, want: map[string]string{"X-Seen": "1"}},
			{advance: 61 * time.Second, body: "body", cs: "fwd=stale; fwd-status=304", origin: 2, want: map[string]string{"X-Seen": "2", "Content-Length": "4"}},
			{advance: 30 * time.Second, body: "body", cs: "hit", origin: 2, want: map[string]string{"X-Seen": "2", "Age": "30"}},
		}},
		{section: "§4.3.4 a 304 for another representation updates nothing: the request goes again without validators", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			// An origin that judges If-Modified-Since alone: its file
			// changed ("b") but kept its time, as a deploy may leave it.
			tag, body := `"a"`, "old"
			if n > 1 {
				tag, body = `"b"`, "new"
			}
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Etag", tag)
			w.Header().Set("Last-Modified", "Mon, 07 Dec 2026 00:00:00 GMT")
			if r.Header.Get("If-Modified-Since") != "" {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, body)
		}, steps: []cacheStep{
			{body: "old", origin: 1},
			{advance: 61 * time.Second, body: "new", cs: "fwd=stale; fwd-status=200; stored", origin: 3, want: map[string]string{"Etag": `"b"`}},
			{advance: 30 * time.Second, body: "new", cs: "hit", origin: 3, want: map[string]string{"Etag": `"b"`}},
			{advance: 31 * time.Second, body: "new", cs: "fwd=stale; fwd-status=304", origin: 4, want: map[string]string{"Etag": `"b"`}},
		}},
		{section: "§4.3.2 a client's If-None-Match is answered 304 from the cache", origin: maxAge60, steps: []cacheStep{
			{body: "v1", origin: 1},
			{header: h("If-None-Match", `"v1"`), status: 304, body: "", cs: "hit", origin: 1, want: map[string]string{"Etag": `"v1"`, "Age": "0"}},
			{header: h("If-None-Match", `"other"`), body: "v1", cs: "hit", origin: 1},
		}},
		{section: "§4.3.2 a client's conditional on a miss: 304 to it, the whole body to the cache", origin: maxAge60, steps: []cacheStep{
			{header: h("If-None-Match", `"v1"`), status: 304, body: "", cs: "fwd=miss; fwd-status=200; stored", origin: 1},
			{body: "v1", cs: "hit", origin: 1},
		}},
	}
}

// invalidationCases: invalidation after unsafe methods (§4.4).
func invalidationCases() []cacheCase {
	return []cacheCase{
		{section: "§4.4 a successful POST invalidates its target URI", origin: maxAge60, steps: []cacheStep{
			{body: "v1", origin: 1},
			{method: "POST", body: "v2", cs: "fwd=method", origin: 2},
			{body: "v3", cs: "fwd=miss", origin: 3},
		}},
		{section: "§4.4 an error status invalidates nothing", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if r.Method == "DELETE" {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			maxAge60(n, w, r)
		}, steps: []cacheStep{
			{body: "v1", origin: 1},
			{method: "DELETE", status: 403, body: "", origin: 2},
			{body: "v1", cs: "hit", origin: 2},
		}},
		{section: "§4.4 Location and Content-Location of the same origin are invalidated", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if r.Method == "PUT" {
				w.Header().Set("Location", "/b")
				w.Header().Set("Content-Location", "http://elsewhere.example/c")
				w.WriteHeader(http.StatusCreated)
				return
			}
			maxAge60(n, w, r)
		}, steps: []cacheStep{
			{path: "/b", body: "v1", origin: 1},
			{path: "/c", body: "v2", origin: 2},
			{method: "PUT", path: "/a", status: 201, body: "", origin: 3},
			{path: "/b", body: "v4", cs: "fwd=miss", origin: 4},
			{path: "/c", body: "v2", cs: "hit", origin: 4},
		}},
	}
}

// methodRangeCases: HEAD and ranges (RFC 9110) from stored responses.
func methodRangeCases() []cacheCase {
	return []cacheCase{
		{section: "RFC 9110 §9.3.2 HEAD is answered from a stored GET", origin: maxAge60, steps: []cacheStep{
			{body: "v1", origin: 1},
			{method: "HEAD", body: "", cs: "hit", origin: 1, want: map[string]string{"Content-Length": "2", "Etag": `"v1"`}},
		}},
		{section: "RFC 9110 §9.3.2 a HEAD miss goes to the origin and stores nothing", origin: maxAge60, steps: []cacheStep{
			{method: "HEAD", body: "", cs: "fwd=miss", origin: 1},
			{body: "v2", cs: "fwd=miss; fwd-status=200; stored", origin: 2},
		}},
		{section: "RFC 9110 §14.2 a Range is served from a stored full response", origin: serve("0123456789", "Cache-Control", "max-age=60"), steps: []cacheStep{
			{body: "0123456789", origin: 1},
			{header: h("Range", "bytes=2-4"), status: 206, body: "234", cs: "hit", origin: 1, want: map[string]string{"Content-Range": "bytes 2-4/10", "Content-Length": "3"}},
			{header: h("Range", "bytes=-2"), status: 206, body: "89", cs: "hit", origin: 1},
			{header: h("Range", "bytes=20-"), status: 416, body: "", cs: "hit", origin: 1, want: map[string]string{"Content-Range": "bytes */10"}},
			{header: h("Range", "bytes=1-2", "If-Range", `"old"`), body: "0123456789", cs: "hit", origin: 1},
		}},
		{section: "RFC 9110 §14.2 several ranges go to the origin", origin: serve("0123456789", "Cache-Control", "max-age=60"), steps: []cacheStep{
			{body: "0123456789", origin: 1},
			{header: h("Range", "bytes=0-1,4-5"), body: "-", cs: "fwd=bypass; fwd-status=200; detail=multi-range", origin: 2},
			// Two Range lines: a singleton field sent twice, which origins
			// and caches read differently (the first, the last, or a
			// list); before, the hit answered the first line's range.
			{header: h("Range", "bytes=0-1", "Range", "bytes=4-5"), body: "-", cs: "fwd=bypass; fwd-status=200; detail=multi-range", origin: 3},
		}},
		{section: "§3 a 206 from the origin is not stored as a full response", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			http.ServeContent(w, r, "x", cacheT0, strings.NewReader(fmt.Sprintf("v%d-body", n)))
		}, steps: []cacheStep{
			{header: h("Range", "bytes=0-1"), status: 206, body: "v1", cs: "fwd=miss; fwd-status=206", origin: 1},
			{body: "v2-body", cs: "fwd=miss; fwd-status=200; stored", origin: 2},
			{header: h("Range", "bytes=0-1"), status: 206, body: "v2", cs: "hit", origin: 2},
		}},
	}
}

// staleStatusKeyCases: RFC 5861, RFC 9211, size and key settings.
func staleStatusKeyCases() []cacheCase {
	return []cacheCase{
		{section: "RFC 5861 §4 stale-if-error serves the stale response for a 5xx", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if n > 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Cache-Control", "max-age=10, stale-if-error=60")
			io.WriteString(w, "good")
		}, steps: []cacheStep{
			{body: "good", origin: 1},
			{advance: 30 * time.Second, body: "good", cs: "fwd=stale; fwd-status=503; detail=stale-if-error", origin: 2, want: map[string]string{"Age": "30"}},
			{advance: 60 * time.Second, status: 503, body: "", cs: "fwd=stale; fwd-status=503", origin: 3},
		}},
		{section: "RFC 5861 §4 a route's default_stale_if_error applies to responses without one", cc: &CacheConfig{DefaultStaleIfError: time.Minute}, origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if n > 1 {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			w.Header().Set("Cache-Control", "max-age=10")
			io.WriteString(w, "good")
		}, steps: []cacheStep{
			{body: "good", origin: 1},
			{advance: 30 * time.Second, body: "good", cs: "fwd=stale; fwd-status=502; detail=stale-if-error", origin: 2},
		}},
		{section: "RFC 9211 Cache-Status can be turned off per route", cc: &CacheConfig{StatusName: "off"}, origin: maxAge60, steps: []cacheStep{
			{body: "v1", origin: 1, want: map[string]string{"Cache-Status": ""}},
			{body: "v1", origin: 1, want: map[string]string{"Cache-Status": ""}},
		}},
		{section: "max_object_bytes: a larger Content-Length streams through uncached", cc: &CacheConfig{MaxObjectBytes: 4}, origin: serve("0123456789", "Cache-Control", "max-age=60"), steps: []cacheStep{
			{body: "0123456789", cs: "fwd=miss; fwd-status=200; detail=too_large", origin: 1},
			{body: "0123456789", cs: "fwd=miss", origin: 2},
		}},
		{section: "max_object_bytes: a Content-Length over the store's own cap streams through uncached, and says so", cc: &CacheConfig{Store: smallStore(4)}, origin: serve("0123456789", "Cache-Control", "max-age=60"), steps: []cacheStep{
			{body: "0123456789", cs: "fwd=miss; fwd-status=200; detail=too_large", origin: 1},
			{body: "0123456789", cs: "fwd=miss; fwd-status=200; detail=hit-for-pass", origin: 2},
			{body: "0123456789", cs: "fwd=miss; fwd-status=200; detail=hit-for-pass", origin: 3},
		}},
		{section: "§7.3 (policy) a response that sets a cookie is not stored", origin: versioned(false, "Cache-Control", "max-age=60", "Set-Cookie", "s=1"), steps: []cacheStep{
			{body: "v1", cs: "fwd=miss; fwd-status=200; detail=set-cookie", origin: 1},
			{body: "v2", origin: 2},
		}},
		{section: "key: the query is part of the key", origin: maxAge60, steps: []cacheStep{
			{path: "/a?x=1", body: "v1", origin: 1},
			{path: "/a?x=2", body: "v2", origin: 2},
			{path: "/a?x=1", body: "v1", cs: "hit", origin: 2},
		}},
		{section: "key: query selection ignores other parameters", cc: &CacheConfig{Key: CacheKeySpec{Query: []string{"id"}}}, origin: maxAge60, steps: []cacheStep{
			{path: "/a?id=1&utm=a", body: "v1", origin: 1},
			{path: "/a?utm=b&id=1", body: "v1", cs: "hit", origin: 1},
			{path: "/a?id=2", body: "v2", origin: 2},
		}},
		{section: "key: a header addition separates keys", cc: &CacheConfig{Key: CacheKeySpec{Headers: []string{"X-Tenant"}, Cookies: []string{"lang"}}}, origin: maxAge60, steps: []cacheStep{
			{header: h("X-Tenant", "a"), body: "v1", origin: 1},
			{header: h("X-Tenant", "b"), body: "v2", origin: 2},
			{header: h("X-Tenant", "a", "Cookie", "lang=fr"), body: "v3", origin: 3},
			{header: h("X-Tenant", "a"), body: "v1", cs: "hit", origin: 3},
		}},
	}
}
