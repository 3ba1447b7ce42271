package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRealClusterGuardsRouting (issue 12) runs 3 real node processes
// (gossip + raft). Writes that would route nothing are refused, over HTTP
// (an empty body, what curl --data-binary @missing-file sends, "{}", an
// empty YAML document) and by "config apply"; a document with the same
// values (here in JSON) writes no version. After each, the raft indexes
// and config version are unchanged on all three nodes. members shows the
// raft roles, status the raft health and the readiness; peer takes flags
// after its arguments; an empty config written on purpose makes every
// node not ready, a rollback makes them ready again; SIGTERM of each node
// logs no ERROR, no line that is not JSON, no doubled prefix.
func TestRealClusterGuardsRouting(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up") }))
	defer up.Close()
	peer := up.Listener.Addr().String()
	procs := newProcCluster(t, clusterOpts{nodes: 3, profile: "fast", raft: true, upstream: peer})
	var leader, follower *proc
	waitFor(t, "3 voters, version 1 ready everywhere", func() bool {
		leader, follower = nil, nil
		for _, p := range procs {
			st, err := p.status()
			if err != nil || !st.Node.Ready || st.Config == nil || st.Config.Version != 1 || st.Raft == nil || len(st.Raft.Voters) != 3 {
				return false
			}
			if st.Raft.State == "Leader" {
				leader = p
			} else {
				follower = p
			}
		}
		return leader != nil && follower != nil
	})
	marks := func() string {
		var b strings.Builder
		for _, p := range procs {
			st, err := p.status()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s: last %d commit %d applied %d config v%d cluster %q; ", p.name, st.Raft.LastIndex, st.Raft.CommitIndex, st.Raft.AppliedIndex, st.Config.Version, st.Raft.ClusterID)
		}
		return b.String()
	}
	var before string
	// Settled: the leader has written the cluster ID (a raft entry its
	// reconcile loop adds a moment after it wins) and every node applied it.
	waitFor(t, "indexes settled", func() bool {
		before = marks()
		return !strings.Contains(before, `cluster ""`) && before == marks()
	})
	unchanged := func(what string) {
		t.Helper()
		if after := marks(); after != before {
			t.Fatalf("%s moved raft or the config:\nbefore %s\nafter  %s", what, before, after)
		}
	}

	for name, body := range map[string]string{"empty body (curl @missing-file)": "", "{}": "{}", "empty YAML": "---\n# nothing\n"} {
		for _, p := range []*proc{leader, follower} {
			req, _ := http.NewRequest(http.MethodPut, "http://"+p.admin+"/v1/config", strings.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !strings.Contains(string(msg), "nothing was written") {
				t.Fatalf("PUT %s on %s: %d %s", name, p.name, resp.StatusCode, msg)
			}
			unchanged("PUT " + name)
		}
	}
	dir := t.TempDir()
	empty, same := filepath.Join(dir, "empty.yaml"), filepath.Join(dir, "same.json")
	os.WriteFile(empty, nil, 0o644)
	os.WriteFile(same, []byte(fmt.Sprintf(`{"upstreams": [{"name": "web", "peers": [{"addr": %q, "weight": 1}]}], "routes": [{"upstream": "web", "host": "*"}]}`, peer)), 0o644)
	if code, _, errs := cli("config", "apply", "-f", empty, "--admin", follower.admin); code != 1 || !strings.Contains(errs, "empty.yaml: the document has no upstreams and no routes") {
		t.Fatalf("config apply of an empty file: %d %q", code, errs)
	}
	unchanged("config apply empty.yaml")
	if code, out, errs := cli("config", "apply", "-f", same, "--admin", follower.admin); code != 0 || !strings.HasPrefix(out, "unchanged: version 1") {
		t.Fatalf("config apply of the same values: %d %q %q", code, out, errs)
	}
	unchanged("config apply same.json")

	// members ADMIN: raft roles; status ADMIN of a follower: raft health.
	// Waited for: a leader that has just won shows "leader,recovering"
	// until it has applied the log it inherited.
	var out string
	waitFor(t, "members: one leader and two voters", func() bool {
		_, out, _ = cli("members", follower.admin)
		return strings.Count(out, " leader ") == 1 && strings.Count(out, " voter ") == 2 && strings.Contains(out, "RAFT")
	})
	// Autopilot calls servers healthy once it has their stats.
	waitFor(t, "status of a follower: raft healthy, as the leader sees it", func() bool {
		_, out, _ = cli("status", "http://"+follower.admin)
		return strings.Contains(out, "healthy, failure tolerance 1 (as the leader "+leader.name+" sees it)") && strings.Contains(out, "node      "+follower.name)
	})
	if code, out, errs := cli("peer", "disable", "web", peer, "--admin", follower.admin); code != 0 || out != "web "+peer+": disabled\n" {
		t.Fatalf("peer disable with flags last: %d %q %q", code, out, errs)
	}

	if code, out, errs := cli("config", "apply", "--allow-empty", "-f", empty, "--admin", follower.admin); code != 0 || !strings.HasPrefix(out, "applied: version 2") {
		t.Fatalf("config apply --allow-empty: %d %q %q", code, out, errs)
	}
	waitFor(t, "every node not ready for want of routes", func() bool {
		for _, p := range procs {
			code, body, _ := httpGet("http://" + p.admin + "/readyz")
			if code != 503 || !strings.Contains(body, "cluster config version 2 has no routes") {
				return false
			}
		}
		return true
	})
	if _, out, _ := cli("status", leader.admin); !strings.Contains(out, "NOT READY (cluster config version 2 has no routes") {
		t.Fatalf("status of a node without routes:\n%s", out)
	}
	if code, out, errs := cli("config", "rollback", "1", "--admin", follower.admin); code != 0 || !strings.HasPrefix(out, "applied: version 3") || !strings.Contains(out, "content of version 1") {
		t.Fatalf("rollback: %d %q %q", code, out, errs)
	}
	waitFor(t, "every node ready again", func() bool {
		for _, p := range procs {
			if code, _, _ := httpGet("http://" + p.admin + "/readyz"); code != 200 {
				return false
			}
		}
		return true
	})

	stopping := time.Now()
	follower.stop(t)
	checkLog(t, follower.name, follower.log.String(), stopping)
	for _, p := range procs {
		if p != follower {
			p.stop(t)
		}
	}
	for _, p := range procs {
		checkLog(t, p.name, p.log.String(), stopping)
	}
}
