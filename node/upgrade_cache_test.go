package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy/handoff"
	"github.com/pingora-go/pingora-go/sharedcache"
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

// TestUpgradeCarriesLateFills: the old process lists its cache when it
// passes the listeners but serves, and fills, until the successor does;
// what it filled meanwhile reaches the successor too. The test plays the
// successor (its cache, then release and serving) so that the fill falls
// between the two for sure. Before, the stream ended with the listing and
// the late URL went back to the origin from the successor.
func TestUpgradeCarriesLateFills(t *testing.T) {
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Cache-Control", "max-age=300")
		fmt.Fprintf(w, "body of %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	cluster := clusterFor(srv.Listener.Addr().String()) + "    cache: {enabled: true}\n"
	nodeFile := writeNodeFiles(t, "cache-late", fmt.Sprintf("cache_memory_bytes: 16777216\nupgrade_socket: %s/up.sock\n", t.TempDir()), cluster)
	old := startNode(t, nodeFile)
	// A listener only the old process serves: the passed ones are the
	// successor's too.
	own, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go old.srv.Serve(own, old.listeners[0].lc)
	fetch := func(path string) {
		t.Helper()
		resp, err := http.Get("http://" + own.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	const urls = 5
	for i := range urls {
		fetch(fmt.Sprintf("/u%d", i))
	}

	if err := old.OfferHandoff(); err != nil {
		t.Fatal(err)
	}
	in, err := handoff.Request(old.cfg.UpgradeSocketPath(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	heir, err := sharedcache.New(sharedcache.Config{Name: "cache-late", MaxBytes: 16 << 20, MaxObjectBytes: 1 << 20})
	if err != nil {
		in.Fail(err)
		t.Fatal(err)
	}
	t.Cleanup(func() { heir.Close() })
	heir.Inherit(in.CacheConn(), time.Minute)
	waitUntil(t, "the listed objects inherited", func() bool { return heir.Inherited().Objects == urls })
	fetch("/late") // the old process still serves
	if got := fetches.Load(); got != urls+1 {
		t.Fatalf("%d origin requests, want %d", got, urls+1)
	}
	if err := in.Release(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := in.Serving(); err != nil {
		t.Fatal(err)
	}
	<-old.Superseded()
	waitUntil(t, "the stream's end", func() bool { return heir.Inherited().State != "receiving" })
	if st := heir.Inherited(); st.State != "done" || st.Objects != urls+1 {
		t.Fatalf("inherited %+v, want %d objects: the late fill too", st, urls+1)
	}
}
