package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/pingora-go/pingora-go/node/config"
)

// TestDryRunAgreesWithApply (issue 13): checkCluster refuses exactly what
// apply fails on, with the same error, for documents built by hand past
// the parser; the one difference is a CA file, which the dry run does not
// read because it is node-local.
func TestDryRunAgreesWithApply(t *testing.T) {
	a := origin(t, "a")
	n := newNode(t, writeFiles(t, clusterFor(a)))
	good := func() *config.Cluster {
		return &config.Cluster{
			Upstreams:  []config.Upstream{{Name: "web", Peers: []config.Peer{{Addr: a}}}},
			Routes:     []config.Route{{Upstream: "web"}},
			RateLimits: []config.RateLimit{{Name: "api", Limit: 10}},
		}
	}
	missingCA := filepath.Join(t.TempDir(), "no-such-ca.pem")
	for _, tc := range []struct {
		name   string
		mod    func(c *config.Cluster)
		dryErr string // "" when the dry run passes
		appErr string // "" when apply passes
	}{
		{"valid", func(*config.Cluster) {}, "", ""},
		{"duplicate upstream", func(c *config.Cluster) { c.Upstreams = append(c.Upstreams, c.Upstreams[0]) }, `duplicate upstream "web"`, "same"},
		{"unknown upstream", func(c *config.Cluster) { c.Routes[0].Upstream = "api" }, `unknown upstream "api"`, "same"},
		{"duplicate route", func(c *config.Cluster) { c.Routes = append(c.Routes, config.Route{Host: "*", Upstream: "web"}) }, "duplicates rule 0", "same"},
		{"policy", func(c *config.Cluster) { c.Upstreams[0].LB = "fastest" }, `Policy: "fastest" is not one of`, "same"},
		{"weight", func(c *config.Cluster) { c.Upstreams[0].Peers[0].Weight = 20000 }, "Peers[0].Weight", "same"},
		{"h1", func(c *config.Cluster) { c.Upstreams[0].Protocol = "h1" }, `protocol: "h1" is not one of http1, h2, h2c`, "same"},
		{"hash key", func(c *config.Cluster) { c.Upstreams[0].HashKey = "uri:x" }, `"uri" takes no name`, "same"},
		{"check interval", func(c *config.Cluster) { c.Upstreams[0].HealthCheck = &config.HealthCheck{Interval: time.Millisecond} }, "HealthCheck.Interval", "same"},
		{"check path", func(c *config.Cluster) { c.Upstreams[0].HealthCheck = &config.HealthCheck{Type: "http", Path: "/%zz"} }, "HealthCheck.Path", "same"},
		{"upgrade", func(c *config.Cluster) { c.Routes[0].Upgrade = []string{"h2c"} }, `"h2c" is never tunnelled`, "same"},
		{"cache", func(c *config.Cluster) { c.Routes[0].Cache = &config.RouteCache{Enabled: true, LockTimeout: time.Hour} }, "LockTimeout", "same"},
		{"host", func(c *config.Cluster) { c.Routes[0].Host = "a b" }, `Host: "a b" is not a host name`, "same"},
		{"duplicate rule", func(c *config.Cluster) { c.RateLimits = append(c.RateLimits, c.RateLimits[0]) }, "duplicate rule name", "same"},
		{"rule key", func(c *config.Cluster) { c.RateLimits[0].Key = "body" }, "Key", "same"},
		{"missing CA (node-local)", func(c *config.Cluster) { c.Upstreams[0].TLS = &config.UpstreamTLS{CA: missingCA} }, "", "read CA"},
	} {
		c := good()
		tc.mod(c)
		if tc.appErr == "same" {
			tc.appErr = tc.dryErr
		}
		dry := checkCluster(c)
		if tc.dryErr == "" && dry != nil || tc.dryErr != "" && (dry == nil || !strings.Contains(dry.Error(), tc.dryErr)) {
			t.Errorf("%s: dry run %v, want %q", tc.name, dry, tc.dryErr)
		}
		applied := n.apply(c, []byte(tc.name), 0, "test")
		if tc.appErr == "" && applied != nil || tc.appErr != "" && (applied == nil || !strings.Contains(applied.Error(), tc.appErr)) {
			t.Errorf("%s: apply %v, want %q", tc.name, applied, tc.appErr)
		}
		if dry != nil && applied != nil && !strings.Contains(applied.Error(), dry.Error()) {
			t.Errorf("%s: the dry run says %q, apply %q", tc.name, dry, applied)
		}
	}
}

// TestDryRunHasNoSideEffects: checkCluster on a document with active and
// passive health checks, hashing, a shared cache and global rate limits
// starts no goroutine, makes no health record or metric series, leaves the
// routing table and the rules alone, and does not change its input.
func TestDryRunHasNoSideEffects(t *testing.T) {
	a := origin(t, "a")
	n := newNode(t, writeFiles(t, clusterFor(a)))
	doc := `upstreams:
  - name: api
    lb: ketama
    hash_key: header:x-user
    health_check: {type: http, path: /healthz, interval: 100ms, rise: 1, fall: 1}
    passive: {max_fails: 1, cool_off: 1s}
    peers:
      - {addr: 127.0.0.1:1, weight: 3}
      - addr: 127.0.0.1:2
routes:
  - host: api.example.com
    upstream: api
    cache: {enabled: true, shared: true}
rate_limits:
  - {name: per-user, key: "header:x-user", limit: 5, scope: global}
`
	c, err := config.ParseCluster("dry.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := json.Marshal(c)
	ignore := goleak.IgnoreCurrent()
	series := pingoraSeries(t, n)
	status := n.Status()
	for range 3 {
		if err := checkCluster(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := goleak.Find(ignore); err != nil {
		t.Fatalf("the dry run left goroutines: %v", err)
	}
	if after := pingoraSeries(t, n); !reflect.DeepEqual(after, series) {
		t.Fatalf("metric series changed:\nbefore %v\nafter  %v", series, after)
	}
	after := n.Status()
	if !reflect.DeepEqual(after.Upstreams, status.Upstreams) || !reflect.DeepEqual(after.Config, status.Config) {
		t.Fatalf("the node's table or config changed: %+v -> %+v", status.Upstreams, after.Upstreams)
	}
	if n.limits.l.Active() {
		t.Fatal("the dry run installed rate-limit rules")
	}
	if now, _ := json.Marshal(c); string(now) != string(before) {
		t.Fatalf("the dry run changed its input:\n%s\n%s", before, now)
	}
}

// pingoraSeries lists this node's own metric series (name and labels).
func pingoraSeries(t *testing.T, n *Node) []string {
	t.Helper()
	fams, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "pingora_") {
			continue
		}
		for _, m := range f.GetMetric() {
			out = append(out, f.GetName()+labels(m))
		}
	}
	return out
}

func labels(m *dto.Metric) string {
	var b strings.Builder
	for _, l := range m.GetLabel() {
		fmt.Fprintf(&b, " %s=%s", l.GetName(), l.GetValue())
	}
	return b.String()
}

// TestPutRefusesWhatCannotBuild (issue 13): on a 3-node cluster, documents
// that the parser took before but that could not work (checks that can
// never run, a hash on a header that cannot exist) or that the proxy and
// the parser disagreed on ("h1", "uri:x") are refused with 400 naming the
// field, on the leader and on a follower, and nothing is replicated. A CA
// file missing on the nodes is node-local: the write is taken, and every
// node keeps its version and reports why in /status.
func TestPutRefusesWhatCannotBuild(t *testing.T) {
	a := origin(t, "a")
	nodes, leader, follower := startRaftTrio(t, a)
	before := stableMarks(t, nodes)
	upstream := func(lines string) string {
		return strings.Replace(clusterFor(a), "    peers:\n", lines+"    peers:\n", 1)
	}
	for _, tc := range []struct{ name, doc, want string }{
		{"check path that cannot be requested", upstream("    health_check: {type: http, path: \"/%zz\"}\n"), "upstreams[0].health_check.path"},
		{"check Host that is no header", upstream("    health_check: {type: http, host: \"a b\"}\n"), "upstreams[0].health_check.host"},
		{"hash on a header no request has", upstream("    lb: ketama\n    hash_key: \"header:x user\"\n"), "upstreams[0].hash_key"},
		{"h1", upstream("    protocol: h1\n"), `upstreams[0].protocol: "h1" is not one of http1, h2, h2c`},
		{"uri with a name", upstream("    hash_key: uri:x\n"), `upstreams[0].hash_key: hash key "uri:x": "uri" takes no name`},
		{"retries over the cap", upstream("    retries: 17\n"), "upstreams[0].retries: 17 is not between -1 (never) and 16"},
	} {
		for _, n := range []*Node{leader, follower} {
			code, body := putConfig(t, n.AdminAddr(), tc.doc, "")
			var answer struct{ Error string }
			json.Unmarshal([]byte(body), &answer)
			if code != 400 || !strings.Contains(answer.Error, tc.want) {
				t.Fatalf("%s on %s: %d %s, want 400 with %q", tc.name, n.cfg.Name, code, body, tc.want)
			}
			if after := marks(nodes); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("%s on %s: raft indexes or config version moved: %v -> %v", tc.name, n.cfg.Name, before, after)
			}
		}
	}

	missing := filepath.Join(t.TempDir(), "ca.pem")
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatal(err)
	}
	code, body := putConfig(t, follower.AdminAddr(), upstream("    tls: {ca: "+missing+"}\n"), "")
	if code != 200 || !strings.Contains(body, `"version": 2`) {
		t.Fatalf("a CA file missing on the nodes: %d %s, want 200 at version 2", code, body)
	}
	waitUntil(t, "every node keeps version 1 and says why", func() bool {
		for _, n := range nodes {
			st := n.Status()
			if st.Config == nil || st.Config.Version != 1 || !strings.Contains(st.Config.Error, "read CA") {
				return false
			}
		}
		return true
	})
}
