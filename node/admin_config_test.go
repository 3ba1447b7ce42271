package node

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// raftMark is what a refused or skipped write must leave alone on a node.
type raftMark struct {
	last, commit, applied uint64
	config                int64
}

func marks(nodes []*Node) []raftMark {
	var out []raftMark
	for _, n := range nodes {
		st := n.Status()
		out = append(out, raftMark{st.Raft.LastIndex, st.Raft.CommitIndex, st.Raft.AppliedIndex, st.Config.Version})
	}
	return out
}

// startRaftTrio starts a 3-node raft cluster seeded with clusterFor(a) and
// waits for version 1 on every node and a leader.
func startRaftTrio(t *testing.T, a string) (nodes []*Node, leader, follower *Node) {
	t.Helper()
	n1 := startRaftNode(t, "n1", a, 3)
	seed := n1.Members().Addr()
	nodes = []*Node{n1, startRaftNode(t, "n2", a, 3, seed), startRaftNode(t, "n3", a, 3, seed)}
	waitUntil(t, "version 1 everywhere, one leader", func() bool {
		leader, follower = nil, nil
		for _, n := range nodes {
			st := n.Status()
			if st.Config == nil || st.Config.Version != 1 || st.Raft.LeaderID == "" || len(st.Raft.Voters) != 3 {
				return false
			}
			if st.Raft.State == "Leader" {
				leader = n
			} else {
				follower = n
			}
		}
		return leader != nil && follower != nil
	})
	return nodes, leader, follower
}

// stableMarks waits until every node has the same raft indexes and
// config version, and returns them.
func stableMarks(t *testing.T, nodes []*Node) []raftMark {
	t.Helper()
	var m []raftMark
	waitUntil(t, "indexes equal on all nodes", func() bool {
		m = marks(nodes)
		for _, x := range m {
			if x != m[0] {
				return false
			}
		}
		return true
	})
	return m
}

// TestConfigWritesThatChangeNothing (issue 12): on a 3-node cluster, an
// empty body, "{}", an empty YAML document and documents with no routes
// or no upstreams are refused with 400 and the reason, on the leader and
// on a follower; a document with the same values as the current one, in
// YAML or JSON, answers 200 with the current version and writes nothing.
// After each, the raft last, commit and applied indexes and the config
// version are unchanged on every node. ?allow_empty=true writes an empty
// document, after which every node's /readyz answers 503 with the reason.
func TestConfigWritesThatChangeNothing(t *testing.T) {
	a := origin(t, "a")
	nodes, leader, follower := startRaftTrio(t, a)
	before := stableMarks(t, nodes)
	unchanged := func(what string) {
		t.Helper()
		if after := marks(nodes); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("%s: raft indexes or config version moved: before %v, after %v", what, before, after)
		}
	}
	upstreamOnly := strings.Split(clusterFor(a), "routes:")[0]
	for _, tc := range []struct{ name, body, reason string }{
		{"empty body", "", "the request body is empty"},
		{"blank body", "\n  \n", "the request body is empty"},
		{"empty JSON object", "{}", "no upstreams and no routes"},
		{"empty YAML", "# nothing here\n---\n", "no upstreams and no routes"},
		{"empty lists", "upstreams: []\nroutes: []\n", "no upstreams and no routes"},
		{"no routes", upstreamOnly, "has no routes"},
		{"empty JSON lists", `{"upstreams": [], "routes": []}`, "no upstreams and no routes"},
	} {
		for _, n := range []*Node{leader, follower} {
			code, body := putConfig(t, n.AdminAddr(), tc.body, "")
			if code != 400 || !strings.Contains(body, tc.reason) || !strings.Contains(body, "allow_empty=true") {
				t.Fatalf("%s on %s: %d %s, want 400 with %q", tc.name, n.cfg.Name, code, body, tc.reason)
			}
			unchanged(tc.name)
		}
	}
	if code, body := send(t, "PUT", "http://"+leader.AdminAddr()+"/v1/config?allow_empty=maybe", "{}", nil); code != 400 || !strings.Contains(body, "allow_empty") {
		t.Fatalf("allow_empty=maybe: %d %s", code, body)
	}
	same := map[string]string{
		"same bytes":          clusterFor(a),
		"same values in JSON": fmt.Sprintf(`{"routes": [{"upstream": "web"}], "upstreams": [{"name": "web", "peers": [{"addr": %q}]}]}`, a),
		"comments and layout": "# the same\n" + strings.ReplaceAll(clusterFor(a), "\n", "\n\n"),
	}
	for name, doc := range same {
		for _, tc := range []struct {
			n       *Node
			ifMatch string
		}{{leader, ""}, {follower, ""}, {follower, "1"}} {
			code, body := putConfig(t, tc.n.AdminAddr(), doc, tc.ifMatch)
			var d ConfigDoc
			if code != 200 || json.Unmarshal([]byte(body), &d) != nil || !d.Unchanged || d.Version != 1 || !strings.Contains(d.Message, "no new version") {
				t.Fatalf("%s on %s (If-Match %q): %d %s, want 200 unchanged at version 1", name, tc.n.cfg.Name, tc.ifMatch, code, body)
			}
			unchanged(name)
		}
	}
	// Same values but a stale If-Match is still a conflict.
	if code, body := putConfig(t, follower.AdminAddr(), clusterFor(a), "0"); code != 409 {
		t.Fatalf("same values, stale If-Match: %d %s", code, body)
	}
	unchanged("stale If-Match")

	code, body := send(t, "PUT", "http://"+follower.AdminAddr()+"/v1/config?allow_empty=true", "", nil)
	if code != 200 || !strings.Contains(body, `"version": 2`) {
		t.Fatalf("empty body with allow_empty=true: %d %s", code, body)
	}
	waitUntil(t, "every node not ready, saying why", func() bool {
		for _, n := range nodes {
			code, body := get(t, "http://"+n.AdminAddr()+"/readyz")
			if code != 503 || !strings.Contains(body, "version 2 has no routes") {
				return false
			}
		}
		return true
	})
	if st := leader.Status(); st.Node.Ready || !strings.Contains(st.Node.NotReady, "no routes") {
		t.Fatalf("/status: ready %v, not_ready %q", st.Node.Ready, st.Node.NotReady)
	}
	if code, _ := putConfig(t, leader.AdminAddr(), clusterFor(a), ""); code != 200 {
		t.Fatal("restoring a routed config")
	}
	waitUntil(t, "every node ready again", func() bool {
		for _, n := range nodes {
			if code, _ := get(t, "http://"+n.AdminAddr()+"/readyz"); code != 200 {
				return false
			}
		}
		return true
	})
}

// TestConsistentReadWithoutRaft: a replicated node whose raft is closed (as
// during a hand-off to a successor, while the old process still answers)
// refuses GET /v1/config?consistent=true with 503 rather than answering
// its applied config, which may be behind (found by chaos/run.sh upgrade),
// and a write with 503 (retry) rather than 409 "not replicated"; the plain
// local read still answers.
func TestConsistentReadWithoutRaft(t *testing.T) {
	n := startRaftNode(t, "n1", origin(t, "a"), 1)
	waitUntil(t, "version 1 applied", func() bool {
		st := n.Status()
		return st.Config != nil && st.Config.Version == 1
	})
	n.closeConsensus()
	if code, body := send(t, "GET", "http://"+n.AdminAddr()+"/v1/config?consistent=true", "", nil); code != 503 || !strings.Contains(body, "raft is not running") {
		t.Fatalf("consistent read without raft: %d %s, want 503", code, body)
	}
	if code, body := putConfig(t, n.AdminAddr(), clusterFor(origin(t, "b")), ""); code != 503 || !strings.Contains(body, "raft is not running") {
		t.Fatalf("write without raft: %d %s, want 503", code, body)
	}
	if code, body := send(t, "GET", "http://"+n.AdminAddr()+"/v1/config", "", nil); code != 200 {
		t.Fatalf("local read without raft: %d %s, want 200", code, body)
	}
}

// TestAmbiguousBooleanQuery: a boolean query parameter of the admin API
// given twice (?allow_empty=true&allow_empty=false read as true before),
// empty, or not a boolean is refused with 400 and the reason, before
// anything is read or written; one value is read by strconv.ParseBool.
func TestAmbiguousBooleanQuery(t *testing.T) {
	n := startRaftNode(t, "n1", origin(t, "a"), 1)
	waitUntil(t, "version 1 applied", func() bool {
		st := n.Status()
		return st.Config != nil && st.Config.Version == 1
	})
	base := "http://" + n.AdminAddr() + "/v1/config"
	for _, tc := range []struct{ query, reason string }{
		{"allow_empty=true&allow_empty=false", "allow_empty given 2 times (true, false)"},
		{"allow_empty=false&allow_empty=true", "allow_empty given 2 times (false, true)"},
		{"allow_empty=true&allow_empty=true", "allow_empty given 2 times"},
		{"allow_empty=", `allow_empty="": want true or false`},
		{"allow_empty", `allow_empty="": want true or false`},
		{"allow_empty=yes", `allow_empty="yes": want true or false`},
		{"allow_empty=%zz", "malformed query string"},
	} {
		code, body := send(t, "PUT", base+"?"+tc.query, "{}", nil)
		if code != 400 || !strings.Contains(errorOf(body), tc.reason) {
			t.Errorf("PUT ?%s: %d %s, want 400 with %q", tc.query, code, body, tc.reason)
		}
	}
	if v := n.Status().Config.Version; v != 1 {
		t.Fatalf("config version %d after refused writes, want 1", v)
	}
	for _, tc := range []struct{ query, reason string }{
		{"consistent=true&consistent=false", "consistent given 2 times (true, false)"},
		{"consistent=maybe", `consistent="maybe": want true or false`},
	} {
		if code, body := send(t, "GET", base+"?"+tc.query, "", nil); code != 400 || !strings.Contains(errorOf(body), tc.reason) {
			t.Errorf("GET ?%s: %d %s, want 400 with %q", tc.query, code, body, tc.reason)
		}
	}
	// One value, in any of ParseBool's spellings, is read as it says.
	if code, body := send(t, "GET", base+"?consistent=1", "", nil); code != 200 || !strings.Contains(body, `"version": 1`) {
		t.Fatalf("GET ?consistent=1: %d %s", code, body)
	}
	if code, body := send(t, "PUT", base+"?allow_empty=FALSE", "{}", nil); code != 400 || !strings.Contains(body, "no upstreams and no routes") {
		t.Fatalf("PUT ?allow_empty=FALSE of an empty document: %d %s, want refused as empty", code, body)
	}
	if code, body := send(t, "PUT", base+"?allow_empty=1", "{}", nil); code != 200 || !strings.Contains(body, `"version": 2`) {
		t.Fatalf("PUT ?allow_empty=1 of an empty document: %d %s, want version 2", code, body)
	}
}

// errorOf returns the "error" of an admin API JSON answer, or the body.
func errorOf(body string) string {
	var e struct{ Error string }
	if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
		return body
	}
	return e.Error
}
