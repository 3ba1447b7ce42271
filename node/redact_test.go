package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestBusiestKeysRedactedForReaders: a global rule keyed by a request
// header lists its busiest keys in /status and /v1/cluster, which are
// read without the admin token; with key "header:authorization" they are
// clients' credentials. A reader without admin rights gets a digest, the
// same for a key in both documents; one with the token gets the keys.
// Before, /status gave anyone who reached the admin port the busiest
// clients' bearer tokens (red team, real binary).
func TestBusiestKeysRedactedForReaders(t *testing.T) {
	up := origin(t, "a")
	extra := fmt.Sprintf("admin_token: s3cret\ngossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\nupgrade_socket: %s\n", filepath.Join(t.TempDir(), "up.sock"))
	cluster := withLimits(clusterFor(up), "  - name: api\n    key: header:authorization\n    limit: 1000\n    period: 1m\n    scope: global\n")
	n := startNode(t, writeNodeFiles(t, "n1", extra, cluster))
	const secret = "Bearer sk_live_SECRET"
	waitUntil(t, "the key among the busiest", func() bool {
		getWith(t, "http://"+n.ListenerAddrs()["http"]+"/", map[string]string{"Authorization": secret})
		rs := n.Status().RateLimits
		return rs != nil && len(rs.Rules[0].Top) == 1
	})
	// get reads path's JSON answer into out, with the admin token if given.
	get := func(path, token string, out any) error {
		req, _ := http.NewRequest("GET", "http://"+n.AdminAddr()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(out)
	}
	status := func(token string) Status {
		t.Helper()
		var st Status
		if err := get("/status", token, &st); err != nil || st.RateLimits == nil || len(st.RateLimits.Rules[0].Top) != 1 {
			t.Fatalf("/status: %v %+v", err, st.RateLimits)
		}
		return st
	}
	view := func(token string) ClusterView {
		t.Helper()
		var v ClusterView
		if err := get("/v1/cluster", token, &v); err != nil || len(v.Members) != 1 || v.Members[0].Status == nil || v.Members[0].Status.RateLimits == nil {
			t.Fatalf("/v1/cluster: %v %+v", err, v)
		}
		return v
	}
	anon := status("").RateLimits.Rules[0].Top[0].Key
	if strings.Contains(anon, "SECRET") || !strings.HasPrefix(anon, "redacted:") {
		t.Fatalf("/status without the token shows the key as %q", anon)
	}
	if got := status("s3cret").RateLimits.Rules[0].Top[0].Key; got != secret {
		t.Fatalf("/status with the token shows the key as %q, want it whole", got)
	}
	if got := view("").Members[0].Status.RateLimits.Rules[0].Top[0].Key; got != anon {
		t.Fatalf("/v1/cluster without the token shows the key as %q, want %q", got, anon)
	}
	if got := view("s3cret").Members[0].Status.RateLimits.Rules[0].Top[0].Key; got != secret {
		t.Fatalf("/v1/cluster with the token shows the key as %q", got)
	}
	// The redaction copied: the node's own view keeps the key.
	if got := view("").Members[0].Status.RateLimits.Rules[0].Top[0].Key; got != anon {
		t.Fatalf("a second read without the token: %q", got)
	}
}
