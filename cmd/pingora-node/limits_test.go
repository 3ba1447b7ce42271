package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/ratelimit"
)

// TestLimitsCommand: "limits" prints each rule and a global rule's
// busiest keys with their owners, from a node's /status; a node without
// rules says so.
func TestLimitsCommand(t *testing.T) {
	st := node.Status{Node: node.NodeStatus{Name: "n1"}, RateLimits: &ratelimit.Status{Rules: []ratelimit.RuleStatus{
		{Name: "api-per-key", Scope: ratelimit.Global, Algorithm: ratelimit.SlidingWindow, Key: "header:x-api-key", Limit: 1000, Period: time.Second,
			Keys: 2, Owned: 1, Allowed: 5000, Denied: 120, Top: []ratelimit.KeyStatus{
				{Key: "k1", Count: 998, Owner: "n2", Lease: 12}, {Key: "k2", Count: 40, Owner: "n1", Lease: 17, Fallback: true}}},
		{Name: "per-ip", Scope: ratelimit.Local, Algorithm: ratelimit.TokenBucket, Key: "client_ip", Limit: 60, Period: time.Minute, Keys: 3},
	}}}
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(st) }))
	defer admin.Close()
	var out, errb bytes.Buffer
	if code := run([]string{"limits", admin.URL}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"api-per-key  global  sliding_window  header:x-api-key  1000/1s",
		"per-ip       local   token_bucket    client_ip         60/1m",
		"api-per-key: busiest keys", "k1   998/1000", "n2", "local share (owner out of reach)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	st.RateLimits = nil
	out.Reset()
	if code := run([]string{"limits", "--admin", admin.URL}, &out, &errb); code != 0 || !strings.Contains(out.String(), "node n1 has no rate limits") {
		t.Fatalf("no rules: exit %d %q", code, out.String())
	}
}
