package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/node/config"
)

// TestUpgradeRefusesGossipIdentityChange: SIGUSR2 (systemctl reload, which
// deploy/systemd documents for "any change to node.yaml") with
// cluster_name changed in the node file started a successor that took the
// node's listeners, gossip and raft over and was then refused by every
// other member (another memberlist label), while the old process exited:
// the node was out of its cluster. The old process now checks the file
// first and keeps serving; any other change still starts the successor.
func TestUpgradeRefusesGossipIdentityChange(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(origin.Close)
	dir := t.TempDir()
	file := filepath.Join(dir, "node.yaml")
	base := "name: n1\nadmin_addr: 127.0.0.1:0\nlisteners: [{name: http, addr: 127.0.0.1:0}]\ncluster_config: cluster.yaml\n" +
		"gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\ngrace_period: 1s\nupgrade_socket: " + filepath.Join(dir, "up.sock") + "\n"
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("node.yaml", base)
	write("cluster.yaml", "upstreams: [{name: web, peers: [{addr: "+strings.TrimPrefix(origin.URL, "http://")+"}]}]\nroutes: [{upstream: web}]\n")
	cfg, err := config.LoadNode(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(cfg, node.Options{Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	f := &runFlags{config: file}
	started := 0
	start := func([]string, string, io.Writer) { started++ }

	write("node.yaml", base+"cluster_name: prod\n")
	var stderr bytes.Buffer
	upgrade(n, f, nil, "", &stderr, start)
	if started != 0 || !strings.Contains(stderr.String(), `upgrade refused, this process keeps serving: the change cannot apply while the node runs: cluster_name ("pingora" to "prod")`) {
		t.Fatalf("upgrade with cluster_name changed: %d successors started, stderr %q; want none and the reason", started, stderr.String())
	}
	if r := n.Status().Node.LastReload; r == nil || r.Result != "refused" || !strings.Contains(r.Error, "cluster_name") {
		t.Fatalf("status last_reload %+v, want the refusal", r)
	}

	write("node.yaml", base+"log_level: debug\n")
	stderr.Reset()
	upgrade(n, f, nil, "", &stderr, start)
	if started != 1 || stderr.Len() != 0 {
		t.Fatalf("upgrade with another log_level: %d successors started, stderr %q; want one", started, stderr.String())
	}
}
