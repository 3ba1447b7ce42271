package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/config"
)

// writeFiles writes a node file and a cluster config into a temp dir and
// returns the node file's path.
func writeFiles(t *testing.T, cluster string) string {
	t.Helper()
	return writeNodeFiles(t, "test-node", "", cluster)
}

// writeNodeFiles writes a node file named name, with extra lines, and a
// cluster config into a temp dir, and returns the node file's path.
func writeNodeFiles(t *testing.T, name, extra, cluster string) string {
	t.Helper()
	dir := t.TempDir()
	nodeFile := `name: ` + name + `
admin_addr: 127.0.0.1:0
listeners:
  - name: http
    addr: 127.0.0.1:0
    h2c: true
cluster_config: cluster.yaml
grace_period: 5s
` + extra
	if (strings.Contains(extra, "data_dir:") || strings.Contains(extra, "gossip_addr:")) && !strings.Contains(extra, "cluster_addr:") {
		// Not the default 127.0.0.1:7947, which a node or demo running
		// on the machine may hold.
		nodeFile += "cluster_addr: 127.0.0.1:0\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte(nodeFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(cluster), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "node.yaml")
}

func clusterFor(addrs ...string) string {
	var b strings.Builder
	b.WriteString("upstreams:\n  - name: web\n    peers:\n")
	for _, a := range addrs {
		fmt.Fprintf(&b, "      - addr: %s\n", a)
	}
	b.WriteString("routes:\n  - host: \"*\"\n    upstream: web\n")
	return b.String()
}

// newNode builds a node from its file, quiet.
func newNode(t *testing.T, nodeFile string) *Node {
	t.Helper()
	cfg, err := config.LoadNode(nodeFile)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, Options{Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func startNode(t *testing.T, nodeFile string) *Node {
	t.Helper()
	return runNode(t, newNode(t, nodeFile))
}

// runNode starts n and shuts it down when the test ends.
func runNode(t *testing.T, n *Node) *Node {
	t.Helper()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	return n
}

func origin(t *testing.T, name string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNodeServesAndReports(t *testing.T) {
	a := origin(t, "a")
	n := startNode(t, writeFiles(t, clusterFor(a)))
	proxyURL := "http://" + n.ListenerAddrs()["http"]
	admin := "http://" + n.AdminAddr()
	if code, body := get(t, proxyURL+"/x"); code != 200 || body != "a" {
		t.Fatalf("proxy: %d %q", code, body)
	}
	code, body := get(t, admin+"/status")
	if code != 200 {
		t.Fatalf("/status %d", code)
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Node.Name != "test-node" || st.Config == nil || st.Config.Version != 1 || !strings.HasPrefix(st.Config.Hash, "sha256:") ||
		len(st.Upstreams) != 1 || st.Upstreams[0].Peers[0].Addr != a || len(st.Listeners) != 1 {
		t.Fatalf("status: %s", body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := get(t, admin+path); code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
	}
	// Request metrics are recorded after the response reaches the client.
	var metrics string
	waitUntil(t, "request counted", func() bool {
		_, metrics = get(t, admin+"/metrics")
		return strings.Contains(metrics, "pingora_requests_total")
	})
	for _, m := range []string{"pingora_requests_total", "pingora_upstream_connection_reuse_ratio", "pingora_downstream_connections_active", "go_goroutines"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

func TestReloadAppliesAndRefuses(t *testing.T) {
	a, b := origin(t, "a"), origin(t, "b")
	nodeFile := writeFiles(t, clusterFor(a))
	n := startNode(t, nodeFile)
	proxyURL := "http://" + n.ListenerAddrs()["http"]
	clusterFile := filepath.Join(filepath.Dir(nodeFile), "cluster.yaml")

	os.WriteFile(clusterFile, []byte(clusterFor(b)), 0o644)
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, proxyURL+"/"); body != "b" {
		t.Fatalf("after reload: %q", body)
	}
	if v := n.Status().Config.Version; v != 2 {
		t.Fatalf("version %d, want 2", v)
	}
	os.WriteFile(clusterFile, []byte("upstreams:\n  - name: web\n    peers: [{addr: nowhere}]\n"), 0o644)
	err := n.Reload()
	if err == nil || !strings.Contains(err.Error(), "cluster.yaml:3: upstreams[0].peers[0].addr") {
		t.Fatalf("invalid reload: %v", err)
	}
	if _, body := get(t, proxyURL+"/"); body != "b" {
		t.Fatalf("running config lost after a refused reload: %q", body)
	}
	if v := n.Status().Config.Version; v != 2 {
		t.Fatalf("version %d after refused reload, want 2", v)
	}
	// A file that routes nothing does not replace one that routes (issue 12).
	for _, empty := range []string{"", "upstreams: []\nroutes: []\n", strings.Split(clusterFor(a), "routes:")[0]} {
		os.WriteFile(clusterFile, []byte(empty), 0o644)
		if err := n.Reload(); err == nil || !strings.Contains(err.Error(), "every request would get 404") {
			t.Fatalf("reload of %q: %v", empty, err)
		}
		if _, body := get(t, proxyURL+"/"); body != "b" || n.Status().Config.Version != 2 {
			t.Fatalf("running config lost after reloading %q: %q", empty, body)
		}
	}
	// Valid but not buildable here: a CA file that does not exist.
	os.WriteFile(clusterFile, []byte(clusterFor(a)+"    tls: {ca: missing.pem}\n"), 0o644)
	bad := strings.Replace(clusterFor(a), "    peers:", "    tls: {ca: missing.pem}\n    peers:", 1)
	os.WriteFile(clusterFile, []byte(bad), 0o644)
	if err := n.Reload(); err == nil {
		t.Fatal("missing CA accepted")
	}
	st := n.Status()
	if st.Config.Version != 2 || !strings.Contains(st.Config.Error, "missing.pem") {
		t.Fatalf("status after failed apply: %+v", st.Config)
	}
}

// TestReadiness (issue 12): /readyz answers 503 with the reason while the
// node's config routes nothing or it has none, also when it was started
// without a cluster config on purpose.
func TestReadiness(t *testing.T) {
	a := origin(t, "a")
	raft := func(t *testing.T) string {
		return fmt.Sprintf("data_dir: %s\ncluster_addr: 127.0.0.1:0\nupgrade_socket: %s/up.sock\n", t.TempDir(), t.TempDir())
	}
	noClusterConfig := func(nodeFile string) string {
		b, _ := os.ReadFile(nodeFile)
		os.WriteFile(nodeFile, bytes.Replace(b, []byte("cluster_config: cluster.yaml\n"), nil, 1), 0o644)
		return nodeFile
	}
	for _, tc := range []struct {
		name     string
		nodeFile func(t *testing.T) string
		code     int
		reason   string
	}{
		{"routed", func(t *testing.T) string { return writeFiles(t, clusterFor(a)) }, 200, ""},
		{"empty file", func(t *testing.T) string { return writeFiles(t, "") }, 503, "version 1 has no routes"},
		{"no routes", func(t *testing.T) string { return writeFiles(t, strings.Split(clusterFor(a), "routes:")[0]) }, 503, "has no routes"},
		{"raft, empty seed file (not seeded)", func(t *testing.T) string { return writeNodeFiles(t, "r1", raft(t), "") }, 503, "no cluster config applied yet"},
		{"raft, no cluster_config", func(t *testing.T) string { return noClusterConfig(writeNodeFiles(t, "r2", raft(t), "")) }, 503, "no cluster config applied yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, tc.nodeFile(t))
			if tc.code == 503 {
				waitUntil(t, "a leader", func() bool { return n.Store() == nil || n.Store().IsLeader() })
			}
			waitUntil(t, fmt.Sprintf("/readyz %d", tc.code), func() bool {
				code, body := get(t, "http://"+n.AdminAddr()+"/readyz")
				return code == tc.code && strings.Contains(body, tc.reason)
			})
			if st := n.Status(); st.Node.Ready != (tc.code == 200) || !strings.Contains(st.Node.NotReady, tc.reason) {
				t.Fatalf("/status node: %+v", st.Node)
			}
		})
	}
}

func TestInvalidClusterRefusedAtStart(t *testing.T) {
	nodeFile := writeFiles(t, "upstreams:\n  - name: web\n    peers: [{addr: 127.0.0.1:1}]\n    colour: red\n")
	cfg, err := config.LoadNode(nodeFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), `cluster.yaml:4: unknown field "colour"`) {
		t.Fatalf("got %v", err)
	}
}

func post(t *testing.T, url, token string) (int, string) {
	t.Helper()
	h := map[string]string{}
	if token != "" {
		h["Authorization"] = "Bearer " + token
	}
	return send(t, "POST", url, "", h)
}

// send makes one admin request and returns its status and body.
func send(t *testing.T, method, url, body string, header map[string]string) (int, string) {
	t.Helper()
	code, b, _ := sendH(t, method, url, body, header)
	return code, b
}

// TestAdminPeerDisable: an operator takes a peer out of rotation through
// the admin API; /status shows it and traffic avoids it until re-enabled.
func TestAdminPeerDisable(t *testing.T) {
	a, b := origin(t, "a"), origin(t, "b")
	n := startNode(t, writeFiles(t, clusterFor(a, b)))
	proxyURL := "http://" + n.ListenerAddrs()["http"]
	admin := "http://" + n.AdminAddr()
	seen := func() map[string]int {
		m := map[string]int{}
		for range 20 {
			_, body := get(t, proxyURL+"/")
			m[body]++
		}
		return m
	}
	if m := seen(); m["a"] != 10 || m["b"] != 10 {
		t.Fatalf("round robin before: %v", m)
	}
	if code, body := post(t, admin+"/v1/upstreams/web/peers/"+a+"/disable", ""); code != 200 || !strings.Contains(body, `"disabled": true`) {
		t.Fatalf("disable: %d %s", code, body)
	}
	if m := seen(); m["b"] != 20 {
		t.Fatalf("after disable: %v", m)
	}
	st := n.Status()
	if p := st.Upstreams[0].Peers[0]; p.Addr != a || !p.Disabled || p.Healthy {
		t.Fatalf("status after disable: %+v", p)
	}
	for url, want := range map[string]int{
		admin + "/v1/upstreams/web/peers/127.0.0.1:1/disable": 404,
		admin + "/v1/upstreams/nope/peers/" + a + "/disable":  404,
		admin + "/v1/upstreams/web/peers/" + a + "/reboot":    404,
	} {
		if code, body := post(t, url, ""); code != want {
			t.Errorf("%s: %d %s, want %d", url, code, body, want)
		}
	}
	if code, _ := post(t, admin+"/v1/upstreams/web/peers/"+a+"/enable", ""); code != 200 {
		t.Fatalf("enable: %d", code)
	}
	if m := seen(); m["a"] != 10 || m["b"] != 10 {
		t.Fatalf("after enable: %v", m)
	}
}

func TestAdminTokenRequired(t *testing.T) {
	a := origin(t, "a")
	nodeFile := writeFiles(t, clusterFor(a))
	b, _ := os.ReadFile(nodeFile)
	os.WriteFile(nodeFile, append(b, "admin_token: s3cret\n"...), 0o644)
	n := startNode(t, nodeFile)
	url := "http://" + n.AdminAddr() + "/v1/upstreams/web/peers/" + a + "/disable"
	for token, want := range map[string]int{"": 401, "wrong": 401, "s3cret": 200} {
		if code, body := post(t, url, token); code != want {
			t.Errorf("token %q: %d %s, want %d", token, code, body, want)
		}
	}
	// A 401 says what was wrong and how the token goes (a curl user got
	// "missing or wrong admin token" alone).
	if _, body := post(t, url, ""); !strings.Contains(body, `none was sent; send the node's admin_token as the header \"Authorization: Bearer TOKEN\"`) {
		t.Errorf("no token: %s, want how to send it", body)
	}
	if _, body := post(t, url, "wrong"); !strings.Contains(body, "the bearer token sent is not this node's admin_token") {
		t.Errorf("a wrong token: %s, want it said", body)
	}
	if code, _ := get(t, "http://"+n.AdminAddr()+"/status"); code != 200 {
		t.Fatal("reads must not need the token")
	}
	// Profiles are guarded like writes.
	prof := "http://" + n.AdminAddr() + "/debug/pprof/heap?debug=1"
	if code, _ := get(t, prof); code != 401 {
		t.Errorf("profile without the token: %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", prof, nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "heap profile") {
		t.Errorf("profile with the token: %d %.80q", resp.StatusCode, body)
	}
}

// TestHealthOptionsFromClusterFile: the cluster file's health_check block
// drives an active checker; a failing peer leaves rotation and /status
// says why.
func TestHealthOptionsFromClusterFile(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && fail.Load() {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "bad")
	}))
	t.Cleanup(bad.Close)
	good := origin(t, "good")
	cluster := strings.Replace(clusterFor(bad.Listener.Addr().String(), good),
		"    peers:", "    lb: least_conn\n    retries: 2\n    health_check: {type: http, path: /healthz, interval: 100ms, timeout: 1s, rise: 2, fall: 1}\n    passive: {max_fails: 3, cool_off: 1s}\n    peers:", 1)
	n := startNode(t, writeFiles(t, cluster))
	proxyURL := "http://" + n.ListenerAddrs()["http"]
	waitUntil(t, "bad peer marked down", func() bool {
		p := n.Status().Upstreams[0].Peers[0]
		return !p.Healthy && p.ActiveCheck == "down"
	})
	for range 10 {
		if _, body := get(t, proxyURL+"/"); body != "good" {
			t.Fatalf("unhealthy peer served %q", body)
		}
	}
	fail.Store(false)
	waitUntil(t, "bad peer back up", func() bool { return n.Status().Upstreams[0].Peers[0].Healthy })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // sleep-ok: polling a condition under a deadline
	}
}

// TestStartFailureReleasesEverything: when a part fails to start after
// the listeners are bound (here the cluster RPC port is taken), Start
// returns the error and nothing stays bound.
func TestStartFailureReleasesEverything(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	proxyAddr := free.Addr().String()
	free.Close()
	nodeFile := writeNodeFiles(t, "n", "cluster_addr: "+taken.Addr().String()+"\n", clusterFor(origin(t, "a")))
	b, _ := os.ReadFile(nodeFile)
	os.WriteFile(nodeFile, []byte(strings.Replace(string(b), "addr: 127.0.0.1:0\n    h2c", "addr: "+proxyAddr+"\n    h2c", 1)), 0o644)
	n := newNode(t, nodeFile)
	if err := n.Start(); err == nil || !strings.Contains(err.Error(), "cluster_addr") {
		t.Fatalf("Start: %v", err)
	}
	ln, err := net.Listen("tcp", proxyAddr)
	if err != nil {
		t.Fatalf("proxy port still bound after a failed Start: %v", err)
	}
	ln.Close()
}

// TestReadinessWaitingForBootstrap: a new host whose only seed was its
// own address (a mistyped join) waits for bootstrap_expect servers that
// never come; /readyz said "no cluster config applied yet" and nothing on
// what it waited for. It now names the wait, what gossip sees and the
// seeds to check.
func TestReadinessWaitingForBootstrap(t *testing.T) {
	extra := fmt.Sprintf("data_dir: %s\ngossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\nbootstrap_expect: 3\nupgrade_socket: %s/up.sock\n",
		t.TempDir(), t.TempDir())
	n := startNode(t, writeNodeFiles(t, "r3", extra, clusterFor(origin(t, "a"))))
	want := "no cluster config applied yet: no raft leader yet; a new cluster forms once bootstrap_expect (3) servers see each other (gossip sees 1: r3)"
	waitUntil(t, "/readyz naming the bootstrap wait", func() bool {
		code, body := get(t, "http://"+n.AdminAddr()+"/readyz")
		return code == 503 && strings.Contains(body, want) && strings.Contains(body, "check join (none)")
	})
}
