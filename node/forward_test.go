package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/node/config"
)

// refusingNetwork is an Options.Network that counts the cluster
// connections it sees and refuses dials to one address on demand.
type refusingNetwork struct {
	refuse   atomic.Pointer[string]
	accepted atomic.Int64
}

var _ Network = (*refusingNetwork)(nil)

func (rn *refusingNetwork) ClusterListener(l net.Listener) net.Listener {
	return &countingListener{Listener: l, n: &rn.accepted}
}

func (rn *refusingNetwork) ClusterDial(d DialFunc) DialFunc {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if p := rn.refuse.Load(); p != nil && *p == addr {
			return nil, errors.New("test network: refused")
		}
		return d(ctx, addr)
	}
}

func (rn *refusingNetwork) Gossip(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return t
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startForwardPair starts two raft nodes on one cluster port each, with
// mutual TLS when ca is not nil, each advertising an admin address nobody
// listens on: a write that reached the other node's admin API would fail.
// It returns the leader and the follower and the follower's network.
func startForwardPair(t *testing.T, ca *testCA, upstream string) (leader, follower *Node, fnet *refusingNetwork) {
	t.Helper()
	nets := map[string]*refusingNetwork{}
	start := func(name string, seeds ...string) *Node {
		extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\ndata_dir: %s\nbootstrap_expect: 2\n"+
			"upgrade_socket: %s/up.sock\nadmin_advertise_addr: 127.0.0.1:1\n", t.TempDir(), t.TempDir())
		if ca != nil {
			extra += ca.issue(t, name)
		}
		if len(seeds) > 0 {
			extra += "join: [" + seeds[0] + "]\n"
		}
		cfg, err := config.LoadNode(writeNodeFiles(t, name, extra, clusterFor(upstream)))
		if err != nil {
			t.Fatal(err)
		}
		nets[name] = &refusingNetwork{}
		n, err := New(cfg, Options{Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Network: nets[name]})
		if err != nil {
			t.Fatal(err)
		}
		return runNode(t, n)
	}
	n1 := start("n1")
	n2 := start("n2", n1.Members().Addr())
	waitUntil(t, "a leader both nodes know, and version 1 on both", func() bool {
		s1, s2 := n1.Status(), n2.Status()
		return s1.Raft != nil && s2.Raft != nil && s1.Raft.LeaderID != "" && s1.Raft.LeaderID == s2.Raft.LeaderID &&
			s1.Config != nil && s2.Config != nil && s1.Config.Version == 1 && s2.Config.Version == 1
	})
	leader, follower = n1, n2
	if n2.Status().Raft.State == "Leader" {
		leader, follower = n2, n1
	}
	waitUntil(t, "the follower knows the leader's cluster address", func() bool { return follower.memberCluster(leader.cfg.Name) != "" })
	return leader, follower, nets[follower.cfg.Name]
}

// sendH is send that also returns the answer's X-Pingora-Forwarded-By.
func sendH(t *testing.T, method, url, body string, header map[string]string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get(forwardedHeader)
}

// waitServerCalls waits until n's RPC server counted want calls of
// method (a call is counted once its answer is written).
func waitServerCalls(t *testing.T, n *Node, method string, want uint64) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d %s calls served by %s", want, method, n.cfg.Name), func() bool { return serverCalls(n, method) == want })
}

func serverCalls(n *Node, method string) uint64 {
	srv, _ := n.rpcParts()
	for _, m := range srv.Stats().Methods {
		if m.Method == method {
			return m.Calls
		}
	}
	return 0
}

// TestForwardOverWire (issue 13): a follower sends writes, force-leaves
// and its own leave to the leader over the cluster port, with and without
// the cluster's mutual TLS, never to the leader's admin API (advertised
// at an address nobody listens on); the answers are what the leader's
// admin API gives. A leader the follower cannot reach is a 503 that says
// so.
func TestForwardOverWire(t *testing.T) {
	for name, tlsOn := range map[string]bool{"plain": false, "mutual TLS": true} {
		t.Run(name, func(t *testing.T) {
			var ca *testCA
			if tlsOn {
				ca = newClusterCA(t)
			}
			testForwardOverWire(t, ca)
		})
	}
}

func testForwardOverWire(t *testing.T, ca *testCA) {
	a, b := origin(t, "a"), origin(t, "b")
	leader, follower, fnet := startForwardPair(t, ca, a)
	fadmin := "http://" + follower.AdminAddr()

	// Unreachable first, so no connection to the leader is pooled yet.
	// The dial fails, so nothing was sent: the follower holds the write
	// and dials again until its hold (short here) has passed.
	laddr := leader.memberCluster(leader.cfg.Name)
	fnet.refuse.Store(&laddr)
	short := follower.defaultHold()
	short.hold = 300 * time.Millisecond
	follower.holdFor.Store(&short)
	code, body, _ := sendH(t, "PUT", fadmin+"/v1/config", clusterFor(b), nil)
	if want := "forwarding to the leader " + leader.cfg.Name + " at " + laddr; code != 503 || !strings.Contains(body, want) {
		t.Fatalf("leader unreachable: %d %s; want 503 with %q", code, body, want)
	}
	m := regexp.MustCompile(`\((\d+) tries in 300ms waiting for a leader: ` + leader.cfg.Name + ` ×(\d+)\)`).FindStringSubmatch(body)
	if m == nil || m[1] != m[2] {
		t.Fatalf("leader unreachable: %s; want the tries made in the hold", body)
	}
	tries, _ := strconv.Atoi(m[1])
	if tries < 2 {
		t.Fatalf("leader unreachable: %s; want the dial tried again within the hold", body)
	}
	follower.holdFor.Store(nil)
	fnet.refuse.Store(nil)

	code, body, by := sendH(t, "PUT", fadmin+"/v1/config", clusterFor(b), map[string]string{"If-Match": "1"})
	if code != 200 || !strings.Contains(body, `"version": 2`) || by != follower.cfg.Name {
		t.Fatalf("write on the follower: %d %s (forwarded by %q)", code, body, by)
	}
	waitServerCalls(t, leader, rpcConfigPut, 1)
	if leader.opts.Network.(*refusingNetwork).accepted.Load() == 0 {
		t.Fatal("the leader's cluster listener was not wrapped by Options.Network")
	}
	code, body, _ = sendH(t, "PUT", fadmin+"/v1/config", clusterFor(b), nil)
	if code != 200 || !strings.Contains(body, `"unchanged": true`) || !strings.Contains(body, `"version": 2`) {
		t.Fatalf("same values through the follower: %d %s", code, body)
	}
	code, body, _ = sendH(t, "PUT", fadmin+"/v1/config", clusterFor(a), map[string]string{"If-Match": "1"})
	if code != 409 || !strings.Contains(body, `"current_version": 2`) {
		t.Fatalf("stale If-Match through the follower: %d %s", code, body)
	}
	code, body, _ = sendH(t, "PUT", fadmin+"/v1/config", "upstreams: []\nroutes: []\n", map[string]string{"If-Match": "2"})
	if code != 400 || !strings.Contains(body, "allow_empty") {
		t.Fatalf("empty config through the follower: %d %s", code, body)
	}
	code, body, _ = sendH(t, "GET", fadmin+"/v1/config?consistent=true", "", nil)
	if code != 200 || !strings.Contains(body, `"version": 2`) {
		t.Fatalf("consistent read on the follower: %d %s", code, body)
	}
	code, body, by = sendH(t, "POST", fadmin+"/v1/force-leave/ghost", "", nil)
	if code != 404 || !strings.Contains(body, `no member or raft server named \"ghost\"`) || by != follower.cfg.Name {
		t.Fatalf("force-leave of nobody through the follower: %d %s (forwarded by %q)", code, body, by)
	}
	waitServerCalls(t, leader, rpcForceLeave, 1)

	// The leader's handler checks what it is sent, whoever sends it.
	var ans adminAnswer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bad := strings.Replace(clusterFor(a), "upstream: web", "upstream: nowhere", 1)
	if err := follower.rpcClient.Call(ctx, laddr, rpcConfigPut, &rpcConfigPutReq{Body: []byte(bad), IfVersion: -1}, &ans); err != nil {
		t.Fatal(err)
	}
	if ans.Status != 400 || !strings.Contains(ans.Error, `no upstream is named "nowhere"`) {
		t.Fatalf("a bad document sent to the leader: %+v", ans)
	}
	code, body, _ = sendH(t, "PUT", fadmin+"/v1/config", bad, nil)
	if code != 400 || !strings.Contains(body, `no upstream is named \"nowhere\"`) {
		t.Fatalf("a bad document on the follower: %d %s", code, body)
	}

	// The calls are on /metrics: the leader's as a server, the follower's
	// as a client.
	for _, m := range []struct {
		n    *Node
		line string
	}{
		{leader, `pingora_wire_server_calls_total{method="node.config.put"} 4`},
		{leader, `pingora_wire_server_errors_total{code="handler",method="node.config.put"} 0`},
		{leader, `pingora_wire_mux_connections_total `},
		{follower, fmt.Sprintf(`pingora_wire_client_calls_total{method="node.config.put"} %d`, 4+tries)},
		{follower, fmt.Sprintf(`pingora_wire_client_errors_total{code="peer_gone",method="node.config.put"} %d`, tries)},
		{follower, `pingora_wire_client_call_duration_seconds_count{method="node.force_leave"} 1`},
		{follower, `pingora_membership_dropped_total{what="event"} `},
	} {
		// A call is counted once its answer is written: wait for the last.
		waitUntil(t, fmt.Sprintf("%q on %s's /metrics", m.line, m.n.cfg.Name), func() bool {
			_, page := get(t, "http://"+m.n.AdminAddr()+"/metrics")
			return strings.Contains(page, m.line)
		})
	}

	code, body, _ = sendH(t, "POST", fadmin+"/v1/leave", "", nil)
	if code != 200 || !strings.Contains(body, `"raft": "removed"`) {
		t.Fatalf("leave on the follower: %d %s", code, body)
	}
	for _, v := range leader.Status().Raft.Voters {
		if v.ID == follower.cfg.Name {
			t.Fatalf("the follower left but is still a voter: %+v", leader.Status().Raft.Voters)
		}
	}
	waitServerCalls(t, leader, rpcForceLeave, 2)
}

// TestStillAlive: a leader asked by a follower to force-leave a member it
// still sees alive waits for gossip to agree, up to its bound: it proceeds
// once the member turns dead, refuses when it stays alive, and stops
// waiting when the request ends.
func TestStillAlive(t *testing.T) {
	calls := 0
	turnsDead := func() bool { calls++; return calls < 3 }
	if stillAlive(context.Background(), time.Minute, turnsDead) {
		t.Fatal("a member that turned dead during the wait is still alive")
	}
	always := func() bool { return true }
	if !stillAlive(context.Background(), 100*time.Millisecond, always) {
		t.Fatal("a member alive past the wait was taken for dead")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if !stillAlive(ctx, time.Minute, always) {
		t.Fatal("an ended request's wait said dead")
	}
}

// TestNoLeaderAnswerBlamesNoCluster: a node cut off from the leader (a
// partition of one host; the other two still elect and take writes)
// answered a write with "no quorum: the cluster cannot accept writes
// now", and the operator read that the whole cluster was down. The
// answer says what the node knows: it has no leader, which is either
// no quorum or its own isolation, and another node may take the write.
func TestNoLeaderAnswerBlamesNoCluster(t *testing.T) {
	a := storeAnswer(fmt.Errorf("%w: no leader known: %w", consensus.ErrNoQuorum, errors.New("node is not the leader")))
	if a.Status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", a.Status)
	}
	if strings.Contains(a.Error, "the cluster cannot accept writes") || !strings.Contains(a.Error, "no quorum") ||
		!strings.Contains(a.Error, "this node") || !strings.Contains(a.Error, "another node") {
		t.Fatalf("answer %q: want it to say this node has no quorum (the cluster's, or it is cut off) and that another node may take the write", a.Error)
	}
}
