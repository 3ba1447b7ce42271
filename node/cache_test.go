package node

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRouteCacheLive: a route's cache block turns caching on; a reload
// that turns it off sends every request to the origin again, with no
// Cache-Status; the node's cache cap is exported.
func TestRouteCacheLive(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=300")
		fmt.Fprintf(w, "v%d", n)
	}))
	t.Cleanup(srv.Close)
	cluster := func(cache string) string {
		return clusterFor(srv.Listener.Addr().String()) + cache
	}
	on := "    cache: {enabled: true, status_header: edge, lock_timeout: 2s}\n"
	nodeFile := writeNodeFiles(t, "cache-node", "cache_memory_bytes: 8388608\n", cluster(on))
	n := startNode(t, nodeFile)
	url := "http://" + n.ListenerAddrs()["http"] + "/page"
	fetch := func() (string, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.Header.Get("Cache-Status")
	}
	reload := func(doc string) {
		if err := os.WriteFile(filepath.Join(filepath.Dir(nodeFile), "cluster.yaml"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := n.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		reload       string // a new cluster config first, when set
		body, status string
	}{
		{"", "v1", "edge; fwd=miss; fwd-status=200; stored"},
		{"", "v1", "edge; hit; ttl="},
		{cluster(""), "v2", ""},
		{"", "v3", ""},
		{cluster("    cache: {enabled: false}\n"), "v4", ""},
		{cluster(on), "v1", "edge; hit"}, // still fresh in the node's store
	}
	for i, st := range steps {
		if st.reload != "" {
			reload(st.reload)
		}
		b, cs := fetch()
		if b != st.body || !strings.HasPrefix(cs, st.status) || st.status == "" && cs != "" {
			t.Fatalf("step %d: %q %q, want %q %q", i, b, cs, st.body, st.status)
		}
	}
	// A request is counted after its response went out: wait for it.
	for _, want := range []string{`pingora_cache_requests_total{result="hit"} 2`, "pingora_cache_max_bytes 8.388608e+06", "pingora_cache_stored_total 1"} {
		waitUntil(t, "/metrics with "+want, func() bool {
			_, metrics := get(t, "http://"+n.AdminAddr()+"/metrics")
			return strings.Contains(metrics, want)
		})
	}
}
