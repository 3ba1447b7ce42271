package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/membership"
	"github.com/pingora-go/pingora-go/node"
)

// TestStatusAndMembersEscapeControls: what a node reports about its
// members comes from whoever gossips; `status` and `members` write its
// control characters as escapes, so a name or zone holding terminal
// escape sequences (retitle the window, clear the screen, colour) or a
// new line (a forged row) is shown, not obeyed. Before printable, the
// real binary wrote a stranger's member name to the terminal as it was.
func TestStatusAndMembersEscapeControls(t *testing.T) {
	const evil = "x\x1b]0;owned\x07\x1b[2J\r\nfake-row\u009b31m\u202e\xff"
	m := membership.Member{Name: "n2" + evil, Addr: "10.0.0.2:7946", State: membership.Alive, LastChange: time.Unix(0, 0),
		Meta: membership.Meta{Version: "v1" + evil, Zone: "z" + evil, State: membership.StateReady}}
	st := node.Status{
		Node:    node.NodeStatus{Name: "n1", Version: "v1" + evil, Ready: true},
		Gossip:  &node.GossipStatus{Self: "n1", Join: membership.JoinStatus{Seeds: []string{"s" + evil}}},
		Members: []membership.Member{m},
		Ring:    &membership.RingStatus{Members: []string{m.Name}, Shares: map[string]float64{m.Name: 1}},
	}
	body, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	t.Cleanup(srv.Close)
	for name, cmd := range map[string]func([]string, *strings.Builder, *strings.Builder) int{
		"status":  func(a []string, o, e *strings.Builder) int { return cmdStatus(a, o, e) },
		"members": func(a []string, o, e *strings.Builder) int { return cmdMembers(a, o, e) },
	} {
		var out, errOut strings.Builder
		if code := cmd([]string{srv.URL}, &out, &errOut); code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errOut.String())
		}
		got := out.String()
		if i := strings.IndexFunc(got, func(r rune) bool { return r != '\n' && r != '\t' && unsafeRune(r) }); i >= 0 {
			t.Errorf("%s wrote a control character (%q at %d):\n%q", name, got[i:min(i+8, len(got))], i, got)
		}
		for _, line := range strings.Split(got, "\n") {
			if strings.HasPrefix(line, "fake-row") {
				t.Errorf("%s: a new line in a field forged a row:\n%s", name, got)
			}
		}
		if name == "members" && !strings.Contains(got, `n2x\x1b]0;owned\x07\x1b[2J\x0d\x0afake-row\u009b31m\u202e\ufffd`) { // JSON made the bad byte U+FFFD
			t.Errorf("members does not show the name escaped:\n%s", got)
		}
	}
}

// TestJSONOutputEscapesControls: --json writes DEL, the C1 controls and
// the bidirectional overrides in what a node reports as JSON escapes, so
// the document still decodes to the same strings but a terminal shown it
// obeys none of them. Go's encoder escapes only the C0 controls; before
// safeJSON the CLI wrote the rest as the node sent them.
func TestJSONOutputEscapesControls(t *testing.T) {
	const evil = "x\x1b[2J\x7f\u0085\u009b31m\u202e\u2066\u200f, héllo 世界"
	peer := map[string]any{"node": "n2" + evil, "error": evil, "dropped": 1}
	body, err := json.Marshal(map[string]any{"node": "n1" + evil, "hash": evil, "content": evil,
		"nodes": []any{peer}, "members": []any{peer}, evil: evil})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	t.Cleanup(srv.Close)
	var want any
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatal(err)
	}
	for name, run := range map[string]func(stdout, stderr *strings.Builder) int{
		"status":      func(o, e *strings.Builder) int { return cmdStatus([]string{srv.URL, "--json"}, o, e) },
		"members":     func(o, e *strings.Builder) int { return cmdMembers([]string{srv.URL, "--json"}, o, e) },
		"limits":      func(o, e *strings.Builder) int { return cmdLimits([]string{srv.URL, "--json"}, o, e) },
		"cache stats": func(o, e *strings.Builder) int { return cmdCache([]string{"stats", srv.URL, "--json"}, o, e) },
		"cache purge": func(o, e *strings.Builder) int {
			return cmdCache([]string{"purge", "--admin", srv.URL, "--json", "http://example.com/a"}, o, e)
		},
		"config get": func(o, e *strings.Builder) int { return cmdConfig([]string{"get", "--admin", srv.URL, "--json"}, o, e) },
	} {
		var out, errOut strings.Builder
		if code := run(&out, &errOut); code != 0 {
			t.Fatalf("%s --json: exit %d: %s", name, code, errOut.String())
		}
		for _, r := range out.String() {
			if r != '\n' && unsafeRune(r) {
				t.Errorf("%s --json wrote %U raw:\n%q", name, r, out.String())
				break
			}
		}
		var got any
		if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
			t.Fatalf("%s --json wrote no JSON document: %v\n%s", name, err, out.String())
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s --json decodes to\n%#v\nnot what the node sent:\n%#v", name, got, want)
		}
	}
}

func TestSafeJSON(t *testing.T) {
	for in, want := range map[string]string{
		`{"a": [1, "b"]}` + "\n":                 `{"a": [1, "b"]}` + "\n",
		"{\n\t\"n\": \"h\u00e9llo \u4e16\"\r\n}": "{\n\t\"n\": \"h\u00e9llo \u4e16\"\r\n}",
		"[\"\x7f\u0085\u202e\\u001b\"]":          `["\u007f\u0085\u202e\u001b"]`,
		"[\"bad \xc3 utf-8\"]":                   `["bad \ufffd utf-8"]`,
	} {
		got := safeJSON([]byte(in))
		if string(got) != want {
			t.Errorf("safeJSON(%q) = %q, want %q", in, got, want)
		}
		var a, b any
		if err := json.Unmarshal([]byte(in), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(got, &b); err != nil || !reflect.DeepEqual(a, b) {
			t.Errorf("safeJSON(%q) decodes to %q (%v), not %q", in, b, err, a)
		}
	}
}

func TestEscapeControls(t *testing.T) {
	for in, want := range map[string]string{
		"n1":             "n1",
		"héllo, 世界":      "héllo, 世界",
		"a\tb":           `a\x09b`,
		"\x7f\u0085":     `\x7f\u0085`,
		"bad \xc3 utf-8": `bad \xc3 utf-8`,
		"\u2066rtl":      `\u2066rtl`,
	} {
		if got := escapeControls(in); got != want {
			t.Errorf("escapeControls(%q) = %q, want %q", in, got, want)
		}
	}
	// Map keys and strings behind interfaces and pointers are reached.
	v := struct {
		M map[string]*string
		I any
		s string // unexported: left alone, not a panic
	}{M: map[string]*string{"k\x1b": new(string)}, I: []string{"\x1b"}, s: "\x1b"}
	*v.M["k\x1b"] = "v\x1b"
	printable(&v)
	for k, p := range v.M {
		if k != `k\x1b` || *p != `v\x1b` {
			t.Errorf("map: %q: %q", k, *p)
		}
	}
	if s := v.I.([]string); s[0] != `\x1b` {
		t.Errorf("interface: %q", s[0])
	}
}

// TestRaftHealthAsksLeaderStatusOnly: on a follower, status asks the
// leader's gossiped admin address for /status; an address carrying a path
// or query is not asked. Before, "host:port/x?" made the CLI GET /x.
func TestRaftHealthAsksLeaderStatusOnly(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	st := &node.Status{
		Raft: &consensus.Status{LeaderID: "n1"},
		Members: []membership.Member{{Name: "n1", State: membership.Alive,
			Meta: membership.Meta{Addrs: membership.Addrs{Admin: srv.Listener.Addr().String() + "/latest/meta-data?x="}}}},
	}
	got := raftHealth(st)
	if hits.Load() != 0 || !strings.Contains(got, "not host:port") {
		t.Fatalf("raftHealth: %q, %d requests to the gossiped address", got, hits.Load())
	}
}

// TestStatusNoLeaderSaysNone: a node that knows no raft leader (a seed
// mistyped, no quorum) printed "leader , term 0"; it says "leader (none)", which no node name can be.
func TestStatusNoLeaderSaysNone(t *testing.T) {
	var out strings.Builder
	printStatus(&out, &node.Status{Raft: &consensus.Status{State: "Follower"}}, "")
	if !strings.Contains(out.String(), "raft      Follower, leader (none), term 0, commit 0, applied 0, 0 voters, 0 non-voters") {
		t.Fatalf("status without a leader:\n%s", out.String())
	}
}

// TestAdminErrorsSayWhatToDo: a 401 says where the token comes from (an
// operator who had not exported PINGORA_ADMIN_TOKEN saw only "missing or
// wrong admin token"), and status sent to a port that is not an admin API
// (a proxy listener, which answers 404) said "HTTP 404 <nil>".
func TestAdminErrorsSayWhatToDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/leave" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error": "missing or wrong admin token"}`))
			return
		}
		if r.URL.Path == "/v1/force-leave/n9" { // a node that tells curl users how the token goes
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error": "missing or wrong admin token: none was sent; send the node's admin_token as the header \"Authorization: Bearer TOKEN\""}`))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("PINGORA_ADMIN_TOKEN", "")
	var out, errb bytes.Buffer
	if code := run([]string{"leave", srv.URL}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "HTTP 401: missing or wrong admin token (no token was sent: give the node's admin_token with --token or PINGORA_ADMIN_TOKEN)") {
		t.Fatalf("leave without a token: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"force-leave", "n9", "--admin", srv.URL}, &out, &errb); code != 1 || strings.Contains(errb.String(), "Bearer") ||
		!strings.Contains(errb.String(), "HTTP 401: missing or wrong admin token (no token was sent: give the node's admin_token with --token or PINGORA_ADMIN_TOKEN)") {
		t.Fatalf("force-leave without a token, the node's curl advice: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"leave", srv.URL, "--token", "t"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "(the token sent, from --token or PINGORA_ADMIN_TOKEN, is not the node's admin_token)") {
		t.Fatalf("leave with a wrong token: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"status", srv.URL}, &out, &errb); code != 1 || strings.Contains(errb.String(), "<nil>") ||
		!strings.Contains(errb.String(), "/status: HTTP 404 (is this a node's admin address? admin_addr, port 9090 by default; a proxy listener answers 404)") {
		t.Fatalf("status of a port that is not an admin API: exit %d, %q", code, errb.String())
	}
	// A proxy listener whose route answers 200 (the upstream's page) is
	// not a node either: members said "is not a status document: invalid
	// character 'a' looking for beginning of value", and with --json it
	// printed the page and exited 0.
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("a page")) }))
	t.Cleanup(page.Close)
	for _, args := range [][]string{{"members", page.URL}, {"status", "--json", page.URL}} {
		out.Reset()
		errb.Reset()
		if code := run(args, &out, &errb); code != 1 || out.Len() != 0 ||
			!strings.Contains(errb.String(), `/status answered HTTP 200 with no node status (Content-Type "text/plain; charset=utf-8", body "a page"): is this a node's admin address?`) {
			t.Fatalf("%v of a proxy listener: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}

// TestNoLeaderNamesDeadVoters: with 2 of 4 voters killed, status on a
// survivor blamed the network ("gossip sees 1 other member(s) alive: ...
// check that they reach this node's raft address"), while the cause is
// that no quorum is alive; it now says how many voters gossip sees alive,
// which are not, and that a quorum needs more.
func TestNoLeaderNamesDeadVoters(t *testing.T) {
	voters := []consensus.Peer{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}, {ID: "n4"}}
	members := []membership.Member{
		{Name: "n1", State: membership.Alive, Meta: membership.Meta{Addrs: membership.Addrs{Raft: "10.0.0.1:7947"}}},
		{Name: "n2", State: membership.Alive}, {Name: "n3", State: membership.Dead}, {Name: "n4", State: membership.Dead},
	}
	st := &node.Status{Node: node.NodeStatus{Name: "n1"}, Raft: &consensus.Status{Voters: voters}, Members: members}
	got := raftHealth(st)
	if want := "2 of 4 voters alive in gossip (not alive: n3, n4); a quorum needs 3"; !strings.Contains(got, want) || strings.Contains(got, "check that they reach") {
		t.Fatalf("raftHealth:\n%s\nwant it to contain %q and no network hint", got, want)
	}
	// With a quorum alive in gossip, the network is the suspect.
	members[2].State = membership.Alive
	if got := raftHealth(st); !strings.Contains(got, "check that they reach this node's raft address 10.0.0.1:7947") {
		t.Fatalf("raftHealth with a quorum alive:\n%s", got)
	}
}

// TestNoLeaderCutOffNode: a node cut off from its cluster (iptables DROP
// in its namespace) sees every other member dead; its status said "1 of 4
// voters alive ...: start enough of them again on their data_dir" while
// the three others ran and had a leader. With no other member alive and
// a voter failed (not left), it now names the cut-off case first; with the
// others gone by a graceful stop (left), the advice stays as it was.
func TestNoLeaderCutOffNode(t *testing.T) {
	voters := []consensus.Peer{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}, {ID: "n4"}}
	members := []membership.Member{
		{Name: "n1", State: membership.Dead}, {Name: "n2", State: membership.Dead},
		{Name: "n3", State: membership.Alive}, {Name: "n4", State: membership.Dead},
	}
	st := &node.Status{Node: node.NodeStatus{Name: "n3"}, Raft: &consensus.Status{Voters: voters}, Members: members}
	got := raftHealth(st)
	for _, want := range []string{"1 of 4 voters alive in gossip (not alive: n1, n2, n4); a quorum needs 3",
		"this node sees no other member alive, so it may be the one cut off", "check this node's network to them",
		"if they are down, start enough of them again"} {
		if !strings.Contains(got, want) {
			t.Fatalf("raftHealth of a cut-off node:\n%s\nwant it to contain %q", got, want)
		}
	}
	for i := range members {
		if members[i].Name != "n3" {
			members[i].State = membership.Left
		}
	}
	if got := raftHealth(st); strings.Contains(got, "the one cut off") || !strings.Contains(got, "a quorum needs 3: start enough of them again") {
		t.Fatalf("raftHealth with the others stopped (left):\n%s", got)
	}
	// One other member alive: the node is not alone, the old advice holds.
	members[0].State, members[1].State = membership.Alive, membership.Dead
	if got := raftHealth(st); strings.Contains(got, "the one cut off") {
		t.Fatalf("raftHealth with another member alive:\n%s", got)
	}
}

// TestStatusCountsMembersByState: "cluster   3 members" was printed for a
// cluster in which two of the three were dead.
func TestStatusCountsMembersByState(t *testing.T) {
	ring := &membership.RingStatus{Version: 4, Digest: "abc"}
	for _, tc := range []struct {
		states []membership.State
		want   string
	}{
		{[]membership.State{membership.Alive, membership.Alive}, "cluster   2 members, ring v4 digest abc\n"},
		{[]membership.State{membership.Dead, membership.Alive, membership.Dead}, "cluster   3 members (1 alive, 2 dead), ring v4"},
		{[]membership.State{membership.Left, membership.Alive}, "cluster   2 members (1 alive, 1 left), ring v4"},
	} {
		st := &node.Status{Ring: ring}
		for i, s := range tc.states {
			st.Members = append(st.Members, membership.Member{Name: "n" + strconv.Itoa(i), State: s})
		}
		var out strings.Builder
		printStatus(&out, st, "")
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v:\n%s\nwant %q", tc.states, out.String(), tc.want)
		}
	}
}

// TestStatusVotersSingular: a one-node cluster printed "1 voters".
func TestStatusVotersSingular(t *testing.T) {
	var out strings.Builder
	printStatus(&out, &node.Status{Raft: &consensus.Status{State: "Leader", LeaderID: "n1", Voters: []consensus.Peer{{ID: "n1"}}}}, "")
	if !strings.Contains(out.String(), "applied 0, 1 voter, 0 non-voters") {
		t.Fatalf("status of a one-voter cluster:\n%s", out.String())
	}
}

// TestStatusFirstJoinUnderWay: a node started cut off from its seeds (an
// upgrade of a partitioned node) waits in its first join attempt; status
// printed "NOT JOINED: seeds ..., 0 failed attempts, last at 00:00:00: "
// (a zero time and no error), as if an attempt had failed at midnight.
func TestStatusFirstJoinUnderWay(t *testing.T) {
	var out strings.Builder
	printGossip(&out, &node.GossipStatus{Join: membership.JoinStatus{Seeds: []string{"10.0.0.1:7946", "10.0.0.2:7946"}}})
	if got, want := out.String(), "join      NOT JOINED yet: seeds 10.0.0.1:7946,10.0.0.2:7946, first attempt under way\n"; got != want {
		t.Fatalf("status before the first join attempt ended:\n%q\nwant %q", got, want)
	}
}

// TestHealthSaysWhenDownVoterGoes: a voter the leader sees down is shown
// with the time the leader takes it out of raft and the command that does
// it at once; status said only "last contact 1m4.844922117s" while a
// stopped node waited out the dead-server grace.
func TestHealthSaysWhenDownVoterGoes(t *testing.T) {
	healthy, tol := false, 0
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	st := &node.Status{Node: node.NodeStatus{Name: "n1"}, Raft: &consensus.Status{LeaderID: "n1", Healthy: &healthy, FailureTolerance: &tol,
		Voters: []consensus.Peer{{ID: "n1", Health: "healthy"}, {ID: "n2", Health: "unhealthy", LastContact: "1m4.845s", RemoveAt: at}, {ID: "n3", Health: "healthy"}}}}
	got := raftHealth(st)
	if want := "voter n2 (last contact 1m4.845s; down: out of raft at 03:04:05 unless it returns, or now with force-leave n2)"; !strings.Contains(got, want) {
		t.Fatalf("raftHealth:\n%s\nwant it to contain %q", got, want)
	}
}

// TestHealthUnknownLastContact: a leader elected while the old leader was
// cut off reported it unhealthy with "last contact 0s": the leader counts
// contact from its first failed heartbeat, and none had failed yet.
func TestHealthUnknownLastContact(t *testing.T) {
	healthy, tol := false, 0
	st := &node.Status{Node: node.NodeStatus{Name: "n2"}, Raft: &consensus.Status{LeaderID: "n2", Healthy: &healthy, FailureTolerance: &tol,
		Voters: []consensus.Peer{{ID: "n1", Health: "unhealthy", LastContact: "0s"}, {ID: "n2", Health: "healthy"}}}}
	got := raftHealth(st)
	if want := "voter n1 (no failed heartbeat to it recorded yet)"; !strings.Contains(got, want) || strings.Contains(got, "0s") {
		t.Fatalf("raftHealth:\n%s\nwant it to contain %q", got, want)
	}
}

// TestHealthNotRatedYet: a leader elected a moment ago has no autopilot
// rating yet (its first one rated every server down, see consensus
// settled); status says so rather than "health unknown: the leader's
// admin address is not known here" or a list of every voter unhealthy.
func TestHealthNotRatedYet(t *testing.T) {
	st := &node.Status{Node: node.NodeStatus{Name: "n2"}, Raft: &consensus.Status{State: "Leader", LeaderID: "n2",
		Voters: []consensus.Peer{{ID: "n1", Health: "unknown"}, {ID: "n2", Health: "unknown"}}}}
	if got, want := raftHealth(st), "health not rated yet: this node became the leader a moment ago"; !strings.Contains(got, want) {
		t.Fatalf("raftHealth:\n%s\nwant it to contain %q", got, want)
	}
}

// TestStatusShowsLastReload: status prints the last reload's outcome, a
// refusal with its reason: a node file refused on one host only was a
// log line, and status looked as if nothing had happened.
func TestStatusShowsLastReload(t *testing.T) {
	at := time.Date(2026, 12, 7, 22, 16, 52, 0, time.Local)
	for _, tc := range []struct {
		r    *node.ReloadStatus
		want []string
	}{
		{nil, nil},
		{&node.ReloadStatus{At: at, Result: "refused", Error: `node.yaml:5: unknown field "bootstrap_expcet"`},
			[]string{`reload    REFUSED at 22:16:52, running config kept: node.yaml:5: unknown field "bootstrap_expcet"` + "\n"}},
		{&node.ReloadStatus{At: at, Result: "applied", Warning: "cluster config file not applied: ..."},
			[]string{"reload    applied at 22:16:52\n", "          cluster config file not applied: ...\n"}},
		{&node.ReloadStatus{At: at, Result: "handed_off"}, []string{"reload    HANDED OFF at 22:16:52\n"}},
	} {
		var out strings.Builder
		printStatus(&out, &node.Status{Node: node.NodeStatus{LastReload: tc.r}}, "")
		if tc.r == nil && strings.Contains(out.String(), "reload") {
			t.Errorf("no reload yet, status printed one:\n%s", out.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%+v:\n%s\nwant %q", tc.r, out.String(), w)
			}
		}
	}
}
