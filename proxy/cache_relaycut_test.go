package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// holdCollapsed is a RouterApp whose ResponseFilter, for a request marked
// X-Waiter, says it has run (entered) and then waits for release.
type holdCollapsed struct {
	RouterApp
	entered chan struct{}
	release chan struct{}
}

func (a *holdCollapsed) ResponseFilter(s *Session, _ *ResponseHeader, _ struct{}) error {
	if s.Req.Header.Get("X-Waiter") != "" {
		close(a.entered)
		<-a.release
	}
	return nil
}

// TestCacheRelayCutReaderNotServedWhole: a request served from a fill
// under way (collapsed) whose reader the fill left behind, the body having
// outgrown the cache's limit and streamed more than the relay window past
// it, gets a broken response, not an empty one presented as whole. Its
// reader was opened before the fill ended and cut while the response
// phases ran; the fill then ended whole, so the object said complete
// (Len >= 0) and the body went out from the store's blocks, of which the
// cut reader got none: a chunked 200 with nothing in it.
func TestCacheRelayCutReaderNotServedWhole(t *testing.T) {
	const total = 4<<20 + 600<<10 // past the 1000-byte limit by more than the relay window
	more := make(chan struct{})
	var app *holdCollapsed
	s := startCacheSetupApp(t, &CacheConfig{MaxObjectBytes: 1000, LockTimeout: time.Minute}, func(_ int64, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, strings.Repeat("a", 100))
		w.(http.Flusher).Flush() // chunked: no Content-Length
		<-more
		chunk := strings.Repeat("b", 64<<10)
		for sent := 100; sent < total; sent += len(chunk) {
			io.WriteString(w, chunk[:min(len(chunk), total-sent)])
		}
	}, func(ra RouterApp) App[struct{}] {
		app = &holdCollapsed{RouterApp: ra, entered: make(chan struct{}), release: make(chan struct{})}
		return app
	}, ListenerConfig{Name: "http"})
	url := "http://" + s.addr + "/big"
	filler := streamGet(t, url)
	if got := filler.next(t, 100); got != strings.Repeat("a", 100) {
		t.Fatalf("filler's first bytes %q", got)
	}
	// The waiter finds the fill under way, opens its reader at 0 and
	// stops in its response phase.
	type result struct {
		body string
		err  error
		cs   string
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("X-Waiter", "1")
		resp, err := h1Client().Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{string(b), err, cacheStatusOf(resp)}
	}()
	select {
	case <-app.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the second request never reached its response phase")
	}
	close(more)
	if rest := filler.rest(t); len(rest) != total-100 {
		t.Fatalf("filler got %d bytes of the rest, want %d", len(rest), total-100)
	}
	// The filler's client has the whole body: the fill ended.
	close(app.release)
	select {
	case r := <-done:
		t.Logf("collapsed request: %d bytes, err %v", len(r.body), r.err)
		if r.err == nil && len(r.body) != total {
			t.Fatalf("the collapsed request got %d bytes as a whole body of %d (Cache-Status %q)", len(r.body), total, r.cs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the collapsed request")
	}
}
