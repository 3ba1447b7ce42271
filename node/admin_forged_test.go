package node

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pingora-go/pingora-go/node/config"
)

// TestAdminWriteRefusesBrowserForgery: without an admin token, writes are
// trusted for coming from loopback; a web page in the operator's browser
// also comes from loopback, so what a browser adds to a cross-site or
// DNS-rebound request is refused, and what curl and the CLI send is not.
func TestAdminWriteRefusesBrowserForgery(t *testing.T) {
	t.Parallel()
	n := &Node{cfg: &config.Node{}}
	ok := n.adminWrite(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, tc := range []struct {
		name, remote, host string
		hdr                map[string]string
		want               int
	}{
		{"curl", "127.0.0.1:5000", "127.0.0.1:9090", nil, 204},
		{"curl via localhost", "127.0.0.1:5000", "localhost:9090", nil, 204},
		{"curl over ::1", "[::1]:5000", "[::1]:9090", nil, 204},
		{"same-origin page", "127.0.0.1:5000", "127.0.0.1:9090", map[string]string{"Origin": "http://127.0.0.1:9090", "Sec-Fetch-Site": "same-origin"}, 204},
		{"typed in the address bar", "127.0.0.1:5000", "127.0.0.1:9090", map[string]string{"Sec-Fetch-Site": "none"}, 204},
		{"cross-site form post", "127.0.0.1:5000", "127.0.0.1:9090", map[string]string{"Origin": "https://evil.test", "Sec-Fetch-Site": "cross-site"}, 403},
		{"cross-site, old browser (Origin only)", "127.0.0.1:5000", "127.0.0.1:9090", map[string]string{"Origin": "https://evil.test"}, 403},
		{"same-site other port", "127.0.0.1:5000", "127.0.0.1:9090", map[string]string{"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-site"}, 403},
		{"null origin (sandboxed iframe)", "127.0.0.1:5000", "127.0.0.1:9090", map[string]string{"Origin": "null"}, 403},
		{"DNS rebinding", "127.0.0.1:5000", "evil.test:9090", map[string]string{"Origin": "http://evil.test:9090", "Sec-Fetch-Site": "same-origin"}, 403},
		{"DNS rebinding, no browser fields", "127.0.0.1:5000", "evil.test:9090", nil, 403},
		{"not loopback", "10.0.0.7:5000", "10.0.0.1:9090", nil, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://"+tc.host+"/v1/leave", nil)
			r.RemoteAddr, r.Host = tc.remote, tc.host
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			ok(w, r)
			if w.Code != tc.want {
				t.Fatalf("got %d, want %d: %s", w.Code, tc.want, w.Body)
			}
		})
	}
	// With a token, the token is the proof: a browser cannot attach it to
	// a forged request, and non-loopback Hosts are normal.
	n.cfg.AdminToken = "s3cret"
	r := httptest.NewRequest("POST", "http://node-1.internal:9090/v1/leave", nil)
	r.RemoteAddr = "10.0.0.7:5000"
	r.Header.Set("Authorization", "Bearer s3cret")
	w := httptest.NewRecorder()
	ok(w, r)
	if w.Code != 204 {
		t.Fatalf("token write: %d %s", w.Code, w.Body)
	}
}

func TestBearer(t *testing.T) {
	for v, want := range map[string]string{"Bearer t": "t", "bearer t": "t", "BEARER  t": "t", "Basic t": "", "Bearer": "", "": ""} {
		got, ok := bearer(v)
		if got != want || ok != (want != "") {
			t.Errorf("bearer(%q) = %q %v, want %q", v, got, ok, want)
		}
	}
}
