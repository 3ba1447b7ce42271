package node

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/ratelimit"
)

func withLimits(cluster, limits string) string { return cluster + "rate_limits:\n" + limits }

// getWith sends a GET with header fields and returns the response, read.
func getWith(t *testing.T, url string, h map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestNodeLocalLimit: a local rule from the cluster file admits its limit
// per client and refuses the rest with 429 and the fields; /status and
// /metrics show it; a reload that raises the limit keeps the counts; a
// reload with an invalid rule is refused and the rule stays.
func TestNodeLocalLimit(t *testing.T) {
	up := origin(t, "a")
	rule := "  - name: per-ip\n    limit: 3\n    period: 1m\n    headers: true\n"
	nodeFile := writeFiles(t, withLimits(clusterFor(up), rule))
	n := startNode(t, nodeFile)
	url := "http://" + n.ListenerAddrs()["http"] + "/"
	var codes []int
	for i := 0; i < 5; i++ {
		resp := getWith(t, url, nil)
		codes = append(codes, resp.StatusCode)
		if i == 0 && (resp.Header.Get("Ratelimit-Policy") != `"per-ip";q=3;w=60` || resp.Header.Get("Ratelimit") != `"per-ip";r=2;t=60`) {
			t.Fatalf("admitted response fields: %v", resp.Header)
		}
		if i == 4 && (resp.Header.Get("Retry-After") == "" || resp.Header.Get("Ratelimit") != `"per-ip";r=0;t=60`) {
			t.Fatalf("refusal fields: %v", resp.Header)
		}
	}
	if want := []int{200, 200, 200, 429, 429}; !equalInts(codes, want) {
		t.Fatalf("statuses %v, want %v", codes, want)
	}
	st := n.Status()
	if st.RateLimits == nil || len(st.RateLimits.Rules) != 1 || st.RateLimits.Rules[0].Allowed != 3 || st.RateLimits.Rules[0].Denied != 2 {
		t.Fatalf("status: %+v", st.RateLimits)
	}
	_, metrics := get(t, "http://"+n.AdminAddr()+"/metrics")
	for _, m := range []string{`pingora_ratelimit_decisions_total{outcome="allowed",rule="per-ip"} 3`, `pingora_ratelimit_decisions_total{outcome="denied",rule="per-ip"} 2`, "pingora_ratelimit_sync_latency_seconds_bucket"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	clusterFile := filepath.Join(filepath.Dir(nodeFile), "cluster.yaml")
	os.WriteFile(clusterFile, []byte(withLimits(clusterFor(up), strings.Replace(rule, "limit: 3", "limit: 4", 1))), 0o644)
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if a, b := getWith(t, url, nil).StatusCode, getWith(t, url, nil).StatusCode; a != 200 || b != 429 {
		t.Fatalf("after raising the limit to 4: %d %d, want one more admitted (the counts survived)", a, b)
	}
	os.WriteFile(clusterFile, []byte(withLimits(clusterFor(up), strings.Replace(rule, "limit: 3", "limit: 0", 1))), 0o644)
	if err := n.Reload(); err == nil || !strings.Contains(err.Error(), "rate_limits[0].limit") {
		t.Fatalf("invalid rule: %v", err)
	}
	if code := getWith(t, url, nil).StatusCode; code != 429 {
		t.Fatalf("after a refused reload: %d, want the rule still in force", code)
	}
}

// TestLimitPathPrefixEncodedSlash: a rule for a path prefix counts the
// requests that spell its slashes "%2F", or carry path parameters, too:
// an origin that decodes "%2F" (Go's URL.Path, WSGI's PATH_INFO, nginx)
// serves "/api%2Flogin" as "/api/login", and one that drops parameters
// (Tomcat, Jetty) serves "/api;v=1/login" so; each got past a login
// limit that way without a count. "/x/..;/api/login" and
// "/x/..%2Fapi%2Flogin", which origins read two ways, are refused
// (h1.ParamOnDotSegment, h1.SlashHidesDotSegment).
func TestLimitPathPrefixEncodedSlash(t *testing.T) {
	up := origin(t, "a")
	rule := "  - name: login\n    match: {path_prefix: /api/login}\n    limit: 2\n    period: 1m\n"
	n := startNode(t, writeFiles(t, withLimits(clusterFor(up), rule)))
	base := "http://" + n.ListenerAddrs()["http"]
	var codes []int
	for _, p := range []string{"/api/login", "/api%2Flogin", "/api%2flogin", "/x/..%2Fapi%2Flogin", "/x/..;/api/login", "/api;v=1/login", "/api/other",
		"/api%5Clogin", "/api%5clogin", "/x/..%5Capi%5Clogin"} { // IIS reads a backslash as a slash
		codes = append(codes, getWith(t, base+p, nil).StatusCode)
	}
	if want := []int{200, 200, 429, 400, 400, 429, 200, 429, 429, 400}; !equalInts(codes, want) {
		t.Fatalf("statuses %v, want %v", codes, want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestNodesGlobalLimit: three gossiping nodes share a global limit of 30
// per minute on one API key: requests spread over the three proxies admit
// at most 30 plus the stated bound (N·2⌈L·T/(N·P)⌉ = 6), and /status
// names the key's owner, the same on every node.
func TestNodesGlobalLimit(t *testing.T) {
	up := origin(t, "a")
	cluster := withLimits(clusterFor(up), "  - name: api\n    key: header:x-api-key\n    limit: 30\n    period: 1m\n    scope: global\n")
	nodes := make([]*Node, 3)
	for i, name := range []string{"n1", "n2", "n3"} {
		var seeds []string
		if i > 0 {
			seeds = []string{nodes[0].Members().Addr()}
		}
		nodes[i] = startClusterNode(t, name, up, seeds...)
		os.WriteFile(filepath.Join(filepath.Dir(*nodes[i].clusterPath.Load()), "cluster.yaml"), []byte(cluster), 0o644)
		if err := nodes[i].Reload(); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "three nodes on every ring", func() bool {
		for _, n := range nodes {
			if n.Members().Ring().Len() != 3 {
				return false
			}
		}
		return true
	})
	admitted := 0
	for i := 0; i < 150; i++ {
		n := nodes[i%3]
		if getWith(t, "http://"+n.ListenerAddrs()["http"]+"/", map[string]string{"X-Api-Key": "k1"}).StatusCode == 200 {
			admitted++
		}
	}
	if admitted < 1 || admitted > 36 {
		t.Fatalf("admitted %d of 150, want 1 to 36", admitted)
	}
	owner := nodes[0].Members().Ring()
	want, _ := owner.Owner("api\x00k1")
	waitUntil(t, "every node's status names the owner", func() bool {
		for _, n := range nodes {
			rs := n.Status().RateLimits
			if rs == nil || len(rs.Rules[0].Top) != 1 || rs.Rules[0].Top[0].Owner != want {
				return false
			}
		}
		return true
	})
	t.Logf("admitted %d of 150; owner %s", admitted, want)
}

// TestRateLimitsReplicated: a rule written with PUT /v1/config applies
// live; one that does not validate is refused with 400 and the field,
// and nothing is replicated (the version stays).
func TestRateLimitsReplicated(t *testing.T) {
	up := origin(t, "a")
	n := startRaftNode(t, "n1", up, 1)
	waitUntil(t, "version 1 applied", func() bool { st := n.Status(); return st.Config != nil && st.Config.Version == 1 })
	bad := withLimits(clusterFor(up), "  - name: api\n    limit: 0\n")
	if code, body := putConfig(t, n.AdminAddr(), bad, ""); code != 400 || !strings.Contains(body, "rate_limits[0].limit") {
		t.Fatalf("invalid rule: %d %s", code, body)
	}
	if v := n.Status().Config.Version; v != 1 {
		t.Fatalf("version %d after a refused write, want 1", v)
	}
	good := withLimits(clusterFor(up), "  - name: api\n    limit: 2\n    period: 1m\n")
	if code, body := putConfig(t, n.AdminAddr(), good, ""); code != 200 {
		t.Fatalf("valid rule: %d %s", code, body)
	}
	waitUntil(t, "version 2 applied", func() bool { return n.Status().Config.Version == 2 })
	url := "http://" + n.ListenerAddrs()["http"] + "/"
	if a, b, c := getWith(t, url, nil).StatusCode, getWith(t, url, nil).StatusCode, getWith(t, url, nil).StatusCode; a != 200 || b != 200 || c != 429 {
		t.Fatalf("statuses %d %d %d, want 200 200 429", a, b, c)
	}
}

// FuzzRateLimitRules: whatever rate_limits the cluster config accepts,
// the limiter takes (STYLE habit 20: a validated document always applies).
func FuzzRateLimitRules(f *testing.F) {
	base := clusterFor("127.0.0.1:9001")
	f.Add(withLimits(base, "  - name: api\n    key: header:x-api-key\n    limit: 1000\n    scope: global\n"))
	f.Add(withLimits(base, "  - name: t\n    key: \"{route}:{cookie:s}\"\n    limit: 5\n    period: 1m\n    algorithm: token_bucket\n    burst: 9\n    on_exceed: delay\n    max_delay: 2s\n"))
	f.Add(withLimits(base, "  - name: m\n    match: {route: web, host: \"*.a.b\", path_prefix: /x, methods: [GET]}\n    limit: 1\n"))
	f.Fuzz(func(t *testing.T, doc string) {
		c, err := config.ParseCluster("f.yaml", []byte(doc))
		if err != nil {
			return
		}
		l, err := ratelimit.New(ratelimit.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.SetRules(limitRules(c.RateLimits)); err != nil {
			t.Fatalf("a document the config accepts is refused by the limiter: %v\n%s", err, doc)
		}
	})
}

// TestLimitRingOutlivesGossip: once this process's gossip has stopped
// (an upgrade hands the node's identity to its successor, then drains),
// the rate limiter keeps the last ring and the owners' addresses. Before,
// it had no ring, took itself for the owner of every key, and the
// counters it built that way reached the real owners through the
// successor: a key's count jumped by the whole limit, and the second of
// a non-owner's upgrade admitted as few as 542 of 1,000.
func TestLimitRingOutlivesGossip(t *testing.T) {
	up := origin(t, "a")
	n1 := startClusterNode(t, "n1", up)
	n2 := startClusterNode(t, "n2", up, n1.Members().Addr())
	waitUntil(t, "a ring of 2 on n1", func() bool { r := n1.limitRing(); return r != nil && r.Len() == 2 })
	n1.leaveCluster(false) // as lifecycle.release does for an upgrade
	if n1.Members() != nil {
		t.Fatal("n1 still has a running membership")
	}
	r := n1.limitRing()
	if r == nil || r.Len() != 2 {
		t.Fatalf("n1's rate-limit ring after its gossip stopped: %v, want the last one, of 2", r)
	}
	if addr, ok := (memberPeers{n1}).Addr("n2"); !ok || addr != n2.RPCAddr() {
		t.Fatalf("n2's cluster address as n1's limiter sees it: %q %v, want %q", addr, ok, n2.RPCAddr())
	}
}

// TestLimitRingKeptUntilNewGossipStarts: after a failed hand-off the node
// makes a new membership (lifecycle.reopen), whose ring is empty until its
// gossip starts and joins; the rate limiter keeps the released one's ring
// until then, and, when the new one finds no other member, until
// rejoinWait passed. Before, it took the new membership's empty ring at
// once and owned every key meanwhile, as with no ring at all.
func TestLimitRingKeptUntilNewGossipStarts(t *testing.T) {
	up := origin(t, "a")
	n1 := startClusterNode(t, "n1", up)
	startClusterNode(t, "n2", up, n1.Members().Addr())
	waitUntil(t, "a ring of 2 on n1", func() bool { r := n1.limitRing(); return r != nil && r.Len() == 2 })
	n1.leaveCluster(false)                  // lifecycle.release
	if err := n1.newCluster(); err != nil { // lifecycle.reopen, before gossip starts
		t.Fatal(err)
	}
	if r := n1.limitRing(); r == nil || r.Len() != 2 {
		t.Fatalf("n1's rate-limit ring with a new membership not gossiping yet: %v, want the last one, of 2", r)
	}
	if err := n1.startGossip(); err != nil {
		t.Fatal(err)
	}
	// Gossip started on another port, with no seed: n1 is alone in it
	// (n2 looks for it at the old port), so the last ring stays until
	// rejoinWait passed (TestRingsKeptUntilRejoined: until it rejoins).
	if r := n1.limitRing(); r == nil || r.Len() != 2 {
		t.Fatalf("n1's rate-limit ring with a new membership that has not rejoined: %v, want the last one, of 2", r)
	}
	rj := n1.rejoining.Load()
	if rj == nil && n1.limitMembers() == n1.Members() && n1.Members().Ring().Len() == 2 {
		t.Skip("the new gossip port is the old one (the kernel chose it again): n1 rejoined at once")
	}
	if rj == nil || rj.mc != n1.Members() {
		t.Fatal("the new membership is not the one the rings follow once it rejoined")
	}
	last := n1.lastMembers.Load()
	if rj.settled("n1", last, rj.since.Add(rejoinWait-time.Millisecond)) || !rj.settled("n1", last, rj.since.Add(rejoinWait)) {
		t.Fatal("the rings do not follow the new membership when rejoinWait has passed, or do before")
	}
}

// TestStalledSuccessorGivesUpOwnership: once this process has released
// the node's gossip and raft to a successor that is not serving a probe
// interval later, its rate-limit ring leaves the node out, so each key the
// node owned goes to the next node, as it does on the other nodes once
// they declared the silent node dead. Before, the process went on counting
// those keys as their owner from its own clients while the new owner
// counted everyone else's: 396-397/s admitted of a 200/s limit
// (chaos/upgrade-fail.sh with HOLD=12 PHASES=b). Within the probe
// interval, and once the successor serves, the ring is the whole one.
func TestStalledSuccessorGivesUpOwnership(t *testing.T) {
	up := origin(t, "a")
	n1 := startClusterNode(t, "n1", up)
	startClusterNode(t, "n2", up, n1.Members().Addr())
	startClusterNode(t, "n3", up, n1.Members().Addr())
	waitUntil(t, "a ring of 3 on n1", func() bool { r := n1.limitRing(); return r != nil && r.Len() == 3 })
	mc := n1.Members()
	probe := mc.ProbeInterval()
	if probe <= 0 {
		t.Fatalf("probe interval %v", probe)
	}
	whole := mc.Ring()
	key := ""
	for i := 0; key == ""; i++ {
		if _, self := whole.Owner(fmt.Sprintf("k%d", i)); self {
			key = fmt.Sprintf("k%d", i)
		}
	}
	next := whole.Owners(key, 2)[1]
	n1.leaveCluster(false) // as the release for an upgrade does

	now := time.Now()
	n1.releasedAt.Store(now.Add(-probe / 2).UnixNano())
	if id, self := n1.limitRing().Owner(key); id != "n1" || !self {
		t.Fatalf("within a probe interval of the release: %s owned by %s (self %v), want n1", key, id, self)
	}
	if n1.stalled(mc, now) || !n1.stalled(mc, now.Add(probe)) {
		t.Fatalf("stalled at %v and %v after the release: want false, true", probe/2, probe*3/2)
	}
	n1.releasedAt.Store(now.Add(-2 * probe).UnixNano())
	r := n1.limitRing()
	if id, self := r.Owner(key); id != next || self {
		t.Fatalf("a stalled successor: %s owned by %s (self %v), want %s, the next node", key, id, self, next)
	}
	if got := r.Owners(key, 3); len(got) != 2 || slices.Contains(got, "n1") || got[0] != next {
		t.Fatalf("a stalled successor: owners of %s %v, want 2 without n1, %s first", key, got, next)
	}
	if r.Len() != 3 { // this process still decides its clients' requests: a third each
		t.Fatalf("a stalled successor: %d nodes share the limit, want 3", r.Len())
	}
	if sr, ok := r.(ratelimit.StandbyRing); !ok || !sr.Standby() {
		t.Fatal("a stalled successor's ring is no standby ring: the counters handed to the next node would leave this process (TestStandbyKeepsCounters)")
	}
	n1.releasedAt.Store(0) // the successor serves
	if id, _ := n1.limitRing().Owner(key); id != "n1" {
		t.Fatalf("once the successor serves: %s owned by %s, want n1", key, id)
	}
}

// A successor whose gossip has not started serves its clients already:
// until it has a ring of its own, it owns every key (it counts what
// reaches it) but shares the limit as the old process's ring did. With no
// ring, its share was the whole limit, on top of the other nodes' shares
// (chaos/upgrade-fail.sh phase d).
func TestSuccessorSharesAsItsPredecessorsRing(t *testing.T) {
	n := &Node{cfg: &config.Node{Name: "n2"}}
	if r := n.limitRing(); r != nil {
		t.Fatalf("no gossip, no predecessor: ring %v, want none (this node alone)", r)
	}
	n.predecessorMembers.Store(3)
	r := n.limitRing()
	if r == nil || r.Len() != 3 {
		t.Fatalf("a successor of a process whose ring held 3: %v, want a share of a third", r)
	}
	if id, self := r.Owner("api\x00k1"); id != "n2" || !self {
		t.Fatalf("owner %s (self %v), want n2 itself until its gossip starts", id, self)
	}
	if got := r.Owners("api\x00k1", 2); !slices.Equal(got, []string{"n2"}) {
		t.Fatalf("owners %v, want [n2]", got)
	}
}
