package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy/handoff"
)

// TestUpgradeKeepsTheCache: a node with a filled cache is upgraded; the
// successor answers every URL from the cache it inherited, the origin
// sees no request, and /status says what came. Before, the successor
// started empty and each URL went back to the origin (40 requests here).
func TestUpgradeKeepsTheCache(t *testing.T) {
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("ETag", `"`+r.URL.Path+`"`)
		fmt.Fprintf(w, "body of %s %s", r.URL.Path, strings.Repeat("x", 2000))
	}))
	t.Cleanup(srv.Close)
	cluster := clusterFor(srv.Listener.Addr().String()) + "    cache: {enabled: true, status_header: edge}\n"
	nodeFile := writeNodeFiles(t, "cache-up", fmt.Sprintf("cache_memory_bytes: 16777216\nupgrade_socket: %s/up.sock\n", t.TempDir()), cluster)
	old := startNode(t, nodeFile)
	base := "http://" + old.ListenerAddrs()["http"]
	fetch := func(path string) (string, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.Header.Get("Cache-Status")
	}
	const urls = 40
	for i := range urls {
		fetch(fmt.Sprintf("/u%d", i))
	}
	if got := fetches.Load(); got != urls {
		t.Fatalf("%d origin requests filling, want %d", got, urls)
	}

	if err := old.OfferHandoff(); err != nil {
		t.Fatal(err)
	}
	in, err := handoff.Request(old.cfg.UpgradeSocketPath(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadNode(nodeFile)
	if err != nil {
		t.Fatal(err)
	}
	succ, err := New(cfg, Options{Version: "test", Inherit: in, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		in.Fail(err)
		t.Fatal(err)
	}
	runNode(t, succ)
	<-old.Superseded()
	waitUntil(t, "the cache inherited", func() bool {
		in := succ.Status().Cache.Inherited
		return in != nil && in.State == "done"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old.Shutdown(ctx) // only the successor serves from here on

	st := succ.Status().Cache.Inherited
	if st.Objects != urls || st.Bytes < urls*2000 {
		t.Fatalf("inherited %+v, want %d objects", st, urls)
	}
	for i := range urls {
		path := fmt.Sprintf("/u%d", i)
		body, cs := fetch(path)
		if !strings.HasPrefix(body, "body of "+path+" ") || !strings.HasPrefix(cs, "edge; hit") {
			t.Fatalf("%s after the upgrade: %.20q, Cache-Status %q", path, body, cs)
		}
	}
	if got := fetches.Load(); got != urls {
		t.Fatalf("%d origin requests after the upgrade, want none", got-urls)
	}
}
