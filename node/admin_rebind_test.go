package node

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/pingora-go/pingora-go/node/config"
)

// TestAdminReadsRefuseDNSRebinding: a page whose name was rebound to
// 127.0.0.1 reads the admin API from a loopback client with its own name
// in Host; such reads are refused, on a real node too, while the names of
// this machine, any IP address, remote clients and the admin token are
// not. Before rebindGuard, /v1/config and /status answered the page.
func TestAdminReadsRefuseDNSRebinding(t *testing.T) {
	hostname, _ := os.Hostname()
	n := &Node{cfg: &config.Node{AdminToken: "s3cret", AdminAdvertiseAddr: "admin.n1.internal:9090"}}
	h := n.rebindGuard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for _, tc := range []struct {
		name, remote, host, auth string
		want                     int
	}{
		{"curl", "127.0.0.1:5000", "127.0.0.1:9090", "", 204},
		{"localhost", "127.0.0.1:5000", "localhost:9090", "", 204},
		{"a name under .localhost", "127.0.0.1:5000", "n1.localhost:9090", "", 204},
		{"::1", "[::1]:5000", "[::1]:9090", "", 204},
		{"another IP of the host", "127.0.0.1:5000", "10.0.0.1:9090", "", 204},
		{"the host name", "127.0.0.1:5000", hostname + ":9090", "", 204},
		{"admin_advertise_addr's host", "127.0.0.1:5000", "ADMIN.n1.internal.:9090", "", 204},
		{"no Host (HTTP/1.0)", "127.0.0.1:5000", "", "", 204},
		{"rebound page", "127.0.0.1:5000", "evil.example:9090", "", 403},
		{"rebound page, no port", "127.0.0.1:5000", "evil.example", "", 403},
		{"localhost as a prefix", "127.0.0.1:5000", "localhost.evil.example:9090", "", 403},
		{"wrong token", "127.0.0.1:5000", "evil.example:9090", "Bearer nope", 403},
		{"token (a local reverse proxy)", "127.0.0.1:5000", "admin.example.com", "Bearer s3cret", 204},
		{"remote client, any name", "10.0.0.7:5000", "pingora.example.com:9090", "", 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/config", nil)
			r.RemoteAddr, r.Host = tc.remote, tc.host
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("got %d, want %d: %s", w.Code, tc.want, w.Body)
			}
		})
	}

	// A real node: every endpoint is behind the guard.
	real := startNode(t, writeFiles(t, clusterFor(origin(t, "a"))))
	for _, path := range []string{"/status", "/v1/config", "/v1/cluster", "/metrics", "/ui"} {
		for host, want := range map[string]int{"evil.example": 403, "127.0.0.1": 200} {
			req, _ := http.NewRequest("GET", "http://"+real.AdminAddr()+path, nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s with Host %s: %d, want %d", path, host, resp.StatusCode, want)
			}
		}
	}
}
