package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRevalidated304MergedBeforePooled: a stale response the origin
// revalidated with a 304 takes the 304's fields, read from the upstream
// connection's response head; the connection went back to the pool (drain)
// before they were merged, and another request that took it in between
// read its own response into that head. Its fields, a Set-Cookie among
// them, were stored with the revalidated response and served to every
// later client (and with the two requests in parallel, the merge's map
// iteration raced the other request's parse: a fatal concurrent map
// access). The other request runs in the pool's afterPut hook, at the
// moment the 304's connection becomes idle.
func TestRevalidated304MergedBeforePooled(t *testing.T) {
	s := startCacheSetup(t, nil, func(n int64, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/other" {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Set-Cookie", "session=other-client")
			w.Header().Set("X-Seen", "other")
			io.WriteString(w, "other")
			return
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Etag", `"t"`)
		w.Header().Set("X-Seen", fmt.Sprint(n))
		if r.Header.Get("If-None-Match") == `"t"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "body")
	})
	c := h1Client()
	if _, body := s.do(t, c, http.MethodGet, "/a", nil); body != "body" {
		t.Fatalf("first response body %q", body)
	}
	s.fc.Advance(61 * time.Second)
	var armed atomic.Bool
	armed.Store(true)
	other := h1Client()
	ran := false
	s.srv.pool.afterPut = func(uc *upConn) {
		if !armed.CompareAndSwap(true, false) {
			return
		}
		ran = true
		if n := s.srv.pool.idleCount(uc.key); n != 1 {
			t.Errorf("%d idle connections when the 304's was pooled, want 1 (the other request must take it)", n)
		}
		resp, body := s.do(t, other, http.MethodGet, "/other", nil)
		if body != "other" || resp.Header.Get("X-Seen") != "other" {
			t.Errorf("the other request: body %q, X-Seen %q", body, resp.Header.Get("X-Seen"))
		}
	}
	resp, body := s.do(t, c, http.MethodGet, "/a", nil)
	if !ran {
		t.Fatal("the revalidation's connection never went back to the pool")
	}
	check := func(step string, resp *http.Response, body string) {
		t.Helper()
		if body != "body" {
			t.Errorf("%s: body %q, want the stored one", step, body)
		}
		if got := resp.Header.Get("X-Seen"); got != "2" {
			t.Errorf("%s: X-Seen %q, want the 304's \"2\"", step, got)
		}
		if got := resp.Header.Values("Set-Cookie"); len(got) > 0 {
			t.Errorf("%s: Set-Cookie %q: another client's response field", step, got)
		}
	}
	check("revalidated", resp, body)
	s.fc.Advance(10 * time.Second)
	resp, body = s.do(t, c, http.MethodGet, "/a", nil)
	if got := cacheStatusOf(resp); !strings.HasPrefix(got, "hit") {
		t.Fatalf("third request: Cache-Status %q, want a hit", got)
	}
	check("hit after the revalidation", resp, body)
}
