package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/config"
)

// startRaftNode starts a node that gossips and replicates its config with
// raft (fast timings), bootstrapping with expect servers.
func startRaftNode(t *testing.T, name, upstream string, expect int, seeds ...string) *Node {
	t.Helper()
	extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\ndata_dir: %s\nbootstrap_expect: %d\nupgrade_socket: %s/up.sock\n",
		t.TempDir(), expect, t.TempDir())
	if len(seeds) > 0 {
		js, _ := json.Marshal(seeds)
		extra += "join: " + string(js) + "\n"
	}
	return startNode(t, writeNodeFiles(t, name, extra, clusterFor(upstream)))
}

func putConfig(t *testing.T, admin, body, ifMatch string) (int, string) {
	t.Helper()
	h := map[string]string{}
	if ifMatch != "" {
		h["If-Match"] = ifMatch
	}
	return send(t, "PUT", "http://"+admin+"/v1/config", body, h)
}

// TestReplicatedConfig: three nodes bootstrap one raft cluster, the file
// seeds version 1, a write on a follower is forwarded to the leader and
// changes routing on every node; CAS conflicts and invalid configs are
// refused with nothing replicated.
func TestReplicatedConfig(t *testing.T) {
	a, b := origin(t, "a"), origin(t, "b")
	n1 := startRaftNode(t, "n1", a, 3)
	seed := n1.Members().Addr()
	n2 := startRaftNode(t, "n2", a, 3, seed)
	n3 := startRaftNode(t, "n3", a, 3, seed)
	nodes := []*Node{n1, n2, n3}
	applied := func(version int64, body string) bool {
		for _, n := range nodes {
			st := n.Status()
			if st.Config == nil || st.Config.Version != version {
				return false
			}
			if _, got := get(t, "http://"+n.ListenerAddrs()["http"]+"/"); got != body {
				return false
			}
		}
		return true
	}
	waitUntil(t, "version 1 (seeded from the file) on all nodes", func() bool { return applied(1, "a") })
	// An election may be under way (a node starved of CPU misses its
	// heartbeats): wait for a follower that knows a leader, not look once.
	var follower *Node
	waitUntil(t, "a follower with a known leader", func() bool {
		for _, n := range nodes {
			if rs := n.Status().Raft; rs != nil && rs.State == "Follower" && rs.LeaderID != "" {
				follower = n
				return true
			}
		}
		return false
	})
	admin := follower.AdminAddr()
	code, body := putConfig(t, admin, clusterFor(b), "1")
	if code != 200 || !strings.Contains(body, `"version": 2`) {
		t.Fatalf("write on a follower: %d %s", code, body)
	}
	waitUntil(t, "version 2 routing to b on all nodes", func() bool { return applied(2, "b") })

	if code, body := putConfig(t, admin, clusterFor(a), "1"); code != 409 || !strings.Contains(body, `"current_version": 2`) {
		t.Fatalf("stale If-Match: %d %s", code, body)
	}
	bad := strings.Replace(clusterFor(a), "upstream: web", "upstream: nowhere", 1)
	if code, body := putConfig(t, admin, bad, ""); code != 400 || !strings.Contains(body, `no upstream is named \"nowhere\"`) {
		t.Fatalf("invalid config: %d %s", code, body)
	}
	negative := strings.Replace(clusterFor(a), "    peers:", "    max_conns: -1\n    peers:", 1)
	if code, body := putConfig(t, admin, negative, ""); code != 400 || !strings.Contains(body, "upstreams[0].max_conns") || !strings.Contains(body, "negative") {
		t.Fatalf("negative max_conns: %d %s", code, body)
	}
	if code, body := putConfig(t, admin, "upstreams: [", ""); code != 400 {
		t.Fatalf("broken YAML: %d %s", code, body)
	}
	for name, tc := range map[string]struct {
		body, ifMatch string
		code          int
	}{
		"binary garbage":     {"\x00\xff\xfe garbage", "", 400},
		"over 1 MiB":         {strings.Repeat("#", maxConfigBody+1), "", 413},
		"If-Match not a num": {clusterFor(a), "latest", 400},
		"If-Match negative":  {clusterFor(a), "-3", 400},
	} {
		if code, body := putConfig(t, admin, tc.body, tc.ifMatch); code != tc.code {
			t.Fatalf("%s: %d %s, want %d", name, code, body, tc.code)
		}
	}
	code, body = get(t, "http://"+admin+"/v1/config?consistent=true")
	var doc ConfigDoc
	if code != 200 || json.Unmarshal([]byte(body), &doc) != nil || doc.Version != 2 || !strings.Contains(doc.Content, b) {
		t.Fatalf("consistent read: %d %s", code, body)
	}
	if !applied(2, "b") {
		t.Fatal("a refused write changed something")
	}
	code, body = get(t, "http://"+n1.AdminAddr()+"/v1/config/history")
	var hist []ConfigDoc
	if code != 200 || json.Unmarshal([]byte(body), &hist) != nil || len(hist) != 2 {
		t.Fatalf("history: %d %s", code, body)
	}
	// Valid everywhere, but not buildable on any node here (its CA file is
	// missing): committed as version 3, reported, version 2 keeps serving.
	missingCA := strings.Replace(clusterFor(a), "    peers:", "    tls: {ca: missing-ca.pem}\n    peers:", 1)
	if code, body := putConfig(t, admin, missingCA, ""); code != 200 {
		t.Fatalf("write of an unbuildable config: %d %s", code, body)
	}
	waitUntil(t, "apply failure reported", func() bool {
		for _, n := range nodes {
			if c := n.Status().Config; c.Version != 2 || !strings.Contains(c.Error, "missing-ca.pem") {
				return false
			}
		}
		return true
	})
	if !applied(2, "b") {
		t.Fatal("a config that failed to apply replaced the running one")
	}
	if code, _ := putConfig(t, admin, clusterFor(b), ""); code != 200 {
		t.Fatal("write after a failed apply")
	}
	waitUntil(t, "version 4 applied", func() bool { return applied(4, "b") })
	// SIGHUP (Reload) does not put the local seed file over the replicated
	// config.
	os.WriteFile(n1.cfg.Path(n1.cfg.ClusterConfig), []byte(clusterFor(a)), 0o644)
	if err := n1.Reload(); err != nil {
		t.Fatal(err)
	}
	if !applied(4, "b") {
		t.Fatal("Reload applied the local file over the replicated config")
	}
	waitUntil(t, "version 4 gossiped by every member", func() bool {
		for _, n := range nodes {
			for _, m := range n.Status().Members {
				if m.Meta.ConfigVersion != 4 {
					return false
				}
			}
		}
		return true
	})
}

// TestMinorityKeepsServing: with two of three nodes gone, the last one
// refuses writes with 503 within seconds and keeps proxying with its last
// config.
func TestMinorityKeepsServing(t *testing.T) {
	a, b := origin(t, "a"), origin(t, "b")
	n1 := startRaftNode(t, "n1", a, 3)
	seed := n1.Members().Addr()
	n2 := startRaftNode(t, "n2", a, 3, seed)
	n3 := startRaftNode(t, "n3", a, 3, seed)
	waitUntil(t, "version 1 everywhere", func() bool {
		for _, n := range []*Node{n1, n2, n3} {
			if c := n.Status().Config; c == nil || c.Version != 1 {
				return false
			}
		}
		return true
	})
	for _, n := range []*Node{n1, n2} {
		n.store.Load().Close() // crash-like: no leadership transfer, no leave
		n.leaveCluster(false)
	}
	start := time.Now()
	code, body := putConfig(t, n3.AdminAddr(), clusterFor(b), "")
	if code != 503 || !strings.Contains(body, "no quorum") {
		t.Fatalf("write without quorum: %d %s", code, body)
	}
	t.Logf("write refused after %v", time.Since(start))
	if _, got := get(t, "http://"+n3.ListenerAddrs()["http"]+"/"); got != "a" {
		t.Fatalf("minority node stopped serving: %q", got)
	}
}

// TestWriteRidesOutLeaderCrash: a write sent to a follower just as the
// leader dies (its raft, and its cluster port, gone without a word) is
// held while the other two elect a leader, and answered by the new one:
// 200, not 503. With If-Match it is written once: the same If-Match
// again is a conflict.
func TestWriteRidesOutLeaderCrash(t *testing.T) {
	a, b := origin(t, "a"), origin(t, "b")
	n1 := startRaftNode(t, "n1", a, 3)
	seed := n1.Members().Addr()
	n2 := startRaftNode(t, "n2", a, 3, seed)
	n3 := startRaftNode(t, "n3", a, 3, seed)
	nodes := []*Node{n1, n2, n3}
	var leader, follower *Node
	waitUntil(t, "version 1 everywhere, a leader all know, and its cluster address", func() bool {
		leader, follower = nil, nil
		for _, n := range nodes {
			st := n.Status()
			if st.Config == nil || st.Config.Version != 1 || st.Raft == nil || st.Raft.LeaderID == "" || st.Raft.LeaderID != nodes[0].Status().Raft.LeaderID {
				return false
			}
			if st.Raft.State == "Leader" {
				leader = n
			} else {
				follower = n
			}
		}
		return leader != nil && follower != nil && follower.memberCluster(leader.cfg.Name) != ""
	})
	// The crash: raft stops, the cluster port closes; gossip still shows
	// the leader alive for a while, as it would after a kill -9.
	leader.store.Load().Close()
	srv, mux := leader.rpcParts()
	mux.Close()
	srv.Close()

	code, body, by := sendH(t, "PUT", "http://"+follower.AdminAddr()+"/v1/config", clusterFor(b), map[string]string{"If-Match": "1"})
	if code != 200 || !strings.Contains(body, `"version": 2`) {
		t.Fatalf("write on a follower while the leader is replaced: %d %s (forwarded by %q)", code, body, by)
	}
	code, body, _ = sendH(t, "PUT", "http://"+follower.AdminAddr()+"/v1/config", clusterFor(a), map[string]string{"If-Match": "1"})
	if code != 409 || !strings.Contains(body, `"current_version": 2`) {
		t.Fatalf("the same If-Match again: %d %s", code, body)
	}
	waitUntil(t, "version 2 on the survivors", func() bool {
		for _, n := range nodes {
			if n == leader {
				continue
			}
			if c := n.Status().Config; c == nil || c.Version != 2 {
				return false
			}
		}
		return true
	})

	// Without a quorum no hold helps: the write fails once the hold (short
	// here) has passed, with a 503 that says what the last try met.
	for _, n := range nodes {
		if n != leader && n != follower {
			n.store.Load().Close()
			srv, mux := n.rpcParts()
			mux.Close()
			srv.Close()
		}
	}
	short := follower.defaultHold()
	short.hold = time.Second
	follower.holdFor.Store(&short)
	start := time.Now()
	code, body, _ = sendH(t, "PUT", "http://"+follower.AdminAddr()+"/v1/config", clusterFor(a), nil)
	if code != 503 || !strings.Contains(body, "no quorum reachable from this node") && !strings.Contains(body, "forwarding to the leader") {
		t.Fatalf("write without a quorum: %d %s; want 503 saying so", code, body)
	}
	t.Logf("write without a quorum refused after %v: %s", time.Since(start), body)
}

// TestReloadSaysReplicatedClusterFileIsNotApplied: SIGHUP (Reload) on a
// node whose config is replicated does not apply an edited cluster_config
// file, and says so, with how to apply it; an invalid file's error is
// named. The node used to log only "reloaded", an invalid file included,
// as if the edit had been applied.
func TestReloadSaysReplicatedClusterFileIsNotApplied(t *testing.T) {
	a, b := origin(t, "a"), origin(t, "b")
	file := writeNodeFiles(t, "n1", fmt.Sprintf("data_dir: %s\n", t.TempDir()), clusterFor(a))
	cfg, err := config.LoadNode(file)
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	n, err := New(cfg, Options{Version: "test", Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runNode(t, n)
	waitUntil(t, "version 1 applied", func() bool { st := n.Status(); return st.Config != nil && st.Config.Version == 1 })
	clusterFile := n.cfg.Path(n.cfg.ClusterConfig)
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "not applied") {
		t.Fatalf("a reload with the file as seeded warned:\n%s", logs.String())
	}
	for _, tc := range []struct{ content, want string }{
		{clusterFor(b), "differs from the running version"},
		{"routes: [\n", "does not parse"},
	} {
		if err := os.WriteFile(clusterFile, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := n.Reload(); err != nil {
			t.Fatal(err)
		}
		if l := logs.String(); !strings.Contains(l, tc.want) || !strings.Contains(l, "config apply -f "+clusterFile) {
			t.Errorf("reload with %q: no warning that the file is not applied (%q) with the command to apply it:\n%s", tc.content, tc.want, l)
		}
		if st := n.Status(); st.Config.Version != 1 {
			t.Errorf("reload applied the file: version %d", st.Config.Version)
		}
	}
}

// TestRestartWithInvalidSeedFileServesRaftConfig: a node whose data_dir
// holds raft state starts and serves the replicated config even when its
// cluster_config file no longer parses, or was removed: the file only
// seeds a new cluster. One shared seed file, edited badly, kept every node
// of a whole-cluster restart down ("start failed: cluster.yaml:20: ...").
// Without raft state the file must still be valid, and the error says why.
func TestRestartWithInvalidSeedFileServesRaftConfig(t *testing.T) {
	a := origin(t, "a")
	file := writeNodeFiles(t, "n1", fmt.Sprintf("data_dir: %s\n", t.TempDir()), clusterFor(a))
	cfg, err := config.LoadNode(file)
	if err != nil {
		t.Fatal(err)
	}
	clusterFile := cfg.Path(cfg.ClusterConfig)
	first := startNode(t, file)
	waitUntil(t, "version 1 applied", func() bool { st := first.Status(); return st.Config != nil && st.Config.Version == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	first.Shutdown(ctx)
	cancel()

	for _, tc := range []struct {
		name  string
		write func() error
	}{
		{"does not parse", func() error { return os.WriteFile(clusterFile, []byte("routes:\n  - bogus\n"), 0o644) }},
		{"removed", func() error { return os.Remove(clusterFile) }},
	} {
		if err := tc.write(); err != nil {
			t.Fatal(err)
		}
		var logs lockedBuffer
		n, err := New(cfg, Options{Version: "test", Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("seed file %s: New refused a node with raft state: %v", tc.name, err)
		}
		if err := n.Start(); err != nil {
			t.Fatalf("seed file %s: a node with raft state did not start: %v", tc.name, err)
		}
		waitUntil(t, "version 1 served from raft", func() bool { st := n.Status(); return st.Config != nil && st.Config.Version == 1 })
		if _, body := get(t, "http://"+n.ListenerAddrs()["http"]+"/"); body != "a" {
			t.Errorf("seed file %s: proxy answered %q, want the replicated config's origin", tc.name, body)
		}
		if !strings.Contains(logs.String(), "cluster config file not valid, ignored") {
			t.Errorf("seed file %s: no warning that the file was ignored:\n%s", tc.name, logs.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n.Shutdown(ctx)
		cancel()
	}

	// A new data_dir: the file seeds the cluster, so it must be valid.
	if err := os.WriteFile(clusterFile, []byte("routes:\n  - bogus\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := *cfg
	fresh.DataDir = t.TempDir()
	n, err := New(&fresh, Options{Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil {
		err = n.Start()
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			n.Shutdown(ctx)
			cancel()
		}
	}
	if err == nil || !strings.Contains(err.Error(), "cluster.yaml:2") || !strings.Contains(err.Error(), "holds no raft state") {
		t.Fatalf("a new node with an invalid seed file: %v, want the file's error and why it matters", err)
	}
}

// TestReloadOutcomeInStatus: /status keeps the last reload's outcome
// (node.last_reload): refused with the reason, applied, or applied with
// the warning that a replicated node does not apply its edited
// cluster_config file. A refusal on one host of a shared node file was a
// log line only; status said nothing.
func TestReloadOutcomeInStatus(t *testing.T) {
	a, b := origin(t, "a"), origin(t, "b")
	n := startNode(t, writeNodeFiles(t, "n1", "", clusterFor(a)))
	if r := n.Status().Node.LastReload; r != nil {
		t.Fatalf("last_reload before any reload: %+v", r)
	}
	clusterFile := n.cfg.Path(n.cfg.ClusterConfig)
	if err := os.WriteFile(clusterFile, []byte("routes: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(); err == nil {
		t.Fatal("reload of an invalid file succeeded")
	}
	if r := n.Status().Node.LastReload; r == nil || r.Result != "refused" || !strings.Contains(r.Error, "cluster.yaml") || r.At.IsZero() {
		t.Fatalf("last_reload after a refused reload: %+v", r)
	}
	if err := os.WriteFile(clusterFile, []byte(clusterFor(b)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := n.Status().Node.LastReload; r == nil || r.Result != "applied" || r.Error != "" || r.Warning != "" {
		t.Fatalf("last_reload after an applied reload: %+v", r)
	}
	n.NoteReload("refused", errors.New("node.yaml:5: unknown field"))
	if r := n.Status().Node.LastReload; r == nil || r.Result != "refused" || r.Error != "node.yaml:5: unknown field" {
		t.Fatalf("last_reload after NoteReload: %+v", r)
	}

	rn := startNode(t, writeNodeFiles(t, "n2", fmt.Sprintf("data_dir: %s\n", t.TempDir()), clusterFor(a)))
	waitUntil(t, "version 1 applied", func() bool { st := rn.Status(); return st.Config != nil && st.Config.Version == 1 })
	if err := os.WriteFile(rn.cfg.Path(rn.cfg.ClusterConfig), []byte(clusterFor(b)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rn.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := rn.Status().Node.LastReload; r == nil || r.Result != "applied" || !strings.Contains(r.Warning, "config apply -f") {
		t.Fatalf("last_reload of a replicated node with an edited cluster file: %+v", r)
	}
}
