package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/pingora-go/pingora-go/membership"
	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/wire"
)

// startClusterNode starts a node that gossips on loopback (fast profile)
// and joins seeds.
func startClusterNode(t *testing.T, name string, upstream string, seeds ...string) *Node {
	t.Helper()
	extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\nupgrade_socket: %s\n", filepath.Join(t.TempDir(), "up.sock"))
	if len(seeds) > 0 {
		js, _ := json.Marshal(seeds)
		extra += "join: " + string(js) + "\n"
	}
	return startNode(t, writeNodeFiles(t, name, extra, clusterFor(upstream)))
}

// TestNodesJoinAndAgreeOnRing: three nodes joined by address show three
// members and one ring digest in /status; a node that stops leaves every
// ring at once.
func TestNodesJoinAndAgreeOnRing(t *testing.T) {
	up := origin(t, "a")
	n1 := startClusterNode(t, "n1", up)
	seed := n1.Members().Addr()
	n2 := startClusterNode(t, "n2", up, seed)
	n3 := startClusterNode(t, "n3", up, seed)
	nodes := []*Node{n1, n2, n3}
	agreed := func(ns []*Node, want int) bool {
		var digest string
		for _, n := range ns {
			st := n.Status()
			if st.Ring == nil || len(st.Ring.Members) != want {
				return false
			}
			if digest == "" {
				digest = st.Ring.Digest
			} else if st.Ring.Digest != digest {
				return false
			}
		}
		return true
	}
	allReady := func() bool {
		for _, m := range n2.Status().Members {
			if m.Meta.State != "ready" {
				return false
			}
		}
		return true
	}
	waitUntil(t, "three ready nodes on one ring", func() bool { return agreed(nodes, 3) && allReady() })
	st := n2.Status()
	if len(st.Members) != 3 || st.Gossip.Self != "n2" {
		t.Fatalf("members: %+v", st.Members)
	}
	for _, m := range st.Members {
		if m.State != "alive" || m.Meta.State != "ready" || len(m.Meta.Addrs.Proxy) != 1 || m.Meta.Health.Total != 1 || m.Meta.ConfigVersion != 1 {
			t.Errorf("member %s: %+v", m.Name, m)
		}
	}
	// Node-to-node RPC: n1 calls n3 at the address n3 gossips.
	var rpcAddr string
	for _, m := range n1.Status().Members {
		if m.Name == "n3" {
			rpcAddr = m.Meta.Addrs.Cluster
		}
	}
	client, err := wire.NewClient(wire.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var rs RPCStatus
	if err := client.Call(ctx, rpcAddr, rpcStatusMethod, &rpcEmpty{}, &rs); err != nil || rs.Name != "n3" || rs.ConfigVersion != 1 || !rs.Ready {
		t.Fatalf("RPC to n3 at %q: %+v %v", rpcAddr, rs, err)
	}
	start := time.Now()
	if err := n3.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "n3 off the ring", func() bool { return agreed(nodes[:2], 2) })
	t.Logf("graceful leave seen by both in %v", time.Since(start))
	for _, m := range n1.Status().Members {
		if m.Name == "n3" && m.State != "left" {
			t.Fatalf("n3 is %s, want left", m.State)
		}
	}
}

// TestGossipReadyFollowsReadyz: a node gossips "ready", and so joins the
// ring, exactly when its /readyz answers 200. A brand-new raft cluster
// without a cluster config (every node at version 0, /readyz 503) elects
// a leader but gossips "starting" and has an empty ring; a config written
// on one node then brings every node to /readyz 200, "ready" and one ring
// (nothing waits for a ring that needs the config); a config that routes
// nothing takes them off the ring again.
func TestGossipReadyFollowsReadyz(t *testing.T) {
	up := origin(t, "a")
	start := func(name string, seeds ...string) *Node {
		extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\ndata_dir: %s\nbootstrap_expect: 3\nupgrade_socket: %s/up.sock\n",
			t.TempDir(), t.TempDir())
		if len(seeds) > 0 {
			js, _ := json.Marshal(seeds)
			extra += "join: " + string(js) + "\n"
		}
		return startNode(t, writeNodeFiles(t, name, extra, "")) // an empty seed file: nothing applied
	}
	n1 := start("n1")
	seed := n1.Members().Addr()
	nodes := []*Node{n1, start("n2", seed), start("n3", seed)}
	// state reports whether every node sees every member (metadata
	// received) in gossip state want, with ring members ring (one digest),
	// and /readyz answers code.
	state := func(want string, ring, code int) bool {
		digest := ""
		for _, n := range nodes {
			st := n.Status()
			if len(st.Members) != 3 || st.Ring == nil || len(st.Ring.Members) != ring {
				return false
			}
			for _, m := range st.Members {
				if m.Meta.State != membership.NodeState(want) {
					return false
				}
			}
			if digest == "" {
				digest = st.Ring.Digest
			} else if st.Ring.Digest != digest {
				return false
			}
			if c, _ := get(t, "http://"+n.AdminAddr()+"/readyz"); c != code {
				return false
			}
		}
		return true
	}
	leader := func() *Node {
		for _, n := range nodes {
			if n.Store().IsLeader() {
				return n
			}
		}
		return nil
	}
	waitUntil(t, "a leader, every member gossiping \"starting\", an empty ring, /readyz 503", func() bool { return leader() != nil && state("starting", 0, 503) })
	for _, n := range nodes {
		for _, m := range n.Status().Members {
			if m.Meta.State != membership.StateStarting || m.Meta.ConfigVersion != 0 {
				t.Fatalf("%s sees %s as %q at config v%d; /readyz says 503", n.cfg.Name, m.Name, m.Meta.State, m.Meta.ConfigVersion)
			}
		}
	}
	var follower *Node
	for _, n := range nodes {
		if !n.Store().IsLeader() {
			follower = n
		}
	}
	// A write may meet an election (503, fast timings on a loaded
	// machine): it is sent again, as an operator would.
	write := func(query, body string) func() bool {
		return func() bool {
			code, _ := send(t, "PUT", "http://"+follower.AdminAddr()+"/v1/config"+query, body, nil)
			return code == 200
		}
	}
	waitUntil(t, "the first config written", write("", clusterFor(up)))
	waitUntil(t, "all ready on one ring of 3", func() bool { return state("ready", 3, 200) })
	waitUntil(t, "a config without routes written", write("?allow_empty=true", strings.Split(clusterFor(up), "routes:")[0]))
	waitUntil(t, "all starting, ring empty", func() bool { return state("starting", 0, 503) })
}

// TestGossipMetaSizeCheckedAtStart: a node whose gossiped metadata could
// outgrow memberlist's 512 bytes while it runs (many proxy listeners on
// long IPv6 addresses, a long version string, the cluster ID it will
// hold, its counters and config version at their largest) is refused by
// New, before it binds anything, with an error that says what to
// shorten; the same node file with fewer listeners is accepted. A node
// that starts gossips metadata within the bound New checked.
func TestGossipMetaSizeCheckedAtStart(t *testing.T) {
	nodeFile := func(listeners int) string {
		extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ncluster_addr: 127.0.0.1:0\ndata_dir: %s\nbootstrap_expect: 1\nzone: eu-central-1a\n", t.TempDir())
		f := writeNodeFiles(t, "n1", extra, clusterFor("127.0.0.1:1"))
		var ls strings.Builder
		for i := range listeners {
			fmt.Fprintf(&ls, "  - name: l%d\n    addr: \"[fd12:3456:789a:bcde:f012:3456:789a:%04x]:0\"\n", i, i)
		}
		b, _ := os.ReadFile(f)
		os.WriteFile(f, []byte(strings.Replace(string(b), "listeners:\n", "listeners:\n"+ls.String(), 1)), 0o644)
		return f
	}
	version := "v1.4.0-rc.2+g0123456789abcdef0123456789abcdef01234567"
	build := func(f string) (*Node, error) {
		cfg, err := config.LoadNode(f)
		if err != nil {
			t.Fatal(err)
		}
		return New(cfg, Options{Version: version, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	if _, err := build(nodeFile(4)); err != nil {
		t.Fatalf("4 listeners: %v", err)
	}
	_, err := build(nodeFile(6))
	if err == nil {
		t.Fatal("6 listeners on long IPv6 addresses: New accepted metadata that can outgrow 512 bytes")
	}
	for _, want := range []string{"metadata too large", "over memberlist's limit of 512", "7 proxy listener address", "[fd12:3456:789a:bcde:f012:3456:789a:0000]:65535",
		`version "` + version + `"`, "cluster ID (32 characters)", "Shorten what the node advertises"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	t.Log(err)

	// What a started node gossips, at its largest, stays within what New
	// allowed for its node file.
	n := startRaftNode(t, "n2", origin(t, "a"), 1)
	bound, err := n.metaBound(n.worstMeta())
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a cluster ID", func() bool { return n.Store().ClusterID() != "" })
	if got, err := membership.CheckMetaSize(n.meta(membership.StateReady)); err != nil || got > bound {
		t.Fatalf("running node's metadata at its largest: %d bytes, New's bound %d (%v)", got, bound, err)
	}
}

// TestGossipExposed: the no-gossip_key warning is for gossip bound to or
// advertising an address beyond loopback (every interface included); a
// loopback cluster (the demo, tests) gets none.
func TestGossipExposed(t *testing.T) {
	for _, tc := range []struct {
		bind, adv string
		want      bool
	}{
		{"127.0.0.1:7946", "127.0.0.1:7946", false},
		{"127.0.0.12:7946", "127.0.0.12:7946", false},
		{"[::1]:7946", "[::1]:7946", false},
		{"0.0.0.0:7946", "127.0.0.1:7946", true}, // every interface, whatever it advertises
		{"0.0.0.0:7946", "10.0.0.2:7946", true},
		{"10.0.0.2:7946", "10.0.0.2:7946", true},
		{"127.0.0.1:7946", "203.0.113.5:7946", true}, // a forwarded port
		{"gossip.internal:7946", "", true},
	} {
		if got := gossipExposed(tc.bind, tc.adv); got != tc.want {
			t.Errorf("gossipExposed(%q, %q) = %v, want %v", tc.bind, tc.adv, got, tc.want)
		}
	}
	if !strings.Contains(gossipKeyFix, "gossip_key") || !strings.Contains(gossipKeyFix, "PINGORA_GOSSIP_KEY") {
		t.Errorf("the fix does not name the setting: %s", gossipKeyFix)
	}
}

// TestClusterAdvertiseAddrOfAnotherNode: a node whose cluster address to
// advertise is another node's (a node file copied with its
// cluster_advertise_addr) does not start: the others would send it their
// cache, rate-limit, config and raft calls, which that node answers as
// itself. Its own address passes the check.
func TestClusterAdvertiseAddrOfAnotherNode(t *testing.T) {
	up := origin(t, "a")
	a := startClusterNode(t, "a", up)
	extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\ncluster_advertise_addr: %s\n"+
		"upgrade_socket: %s\njoin: [%q]\n", a.RPCAddr(), filepath.Join(t.TempDir(), "up.sock"), a.Members().Addr())
	c := newNode(t, writeNodeFiles(t, "c", extra, clusterFor(up)))
	err := c.Start()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Shutdown(ctx)
		t.Fatal("a node advertising another node's cluster address started")
	}
	if want := `reaches node "a", not this node`; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "cluster_advertise_addr") {
		t.Fatalf("Start: %v, want %q naming cluster_advertise_addr", err, want)
	}
	if got := len(a.Members().Members()); got != 1 {
		t.Fatalf("a lists %d members after c's failed start, want 1", got)
	}
}

// redirectNetwork is an Options.Network that sends every cluster dial to
// one address: the node's advertised cluster address answers as another
// node, as another host's IP does in a copied node file.
type redirectNetwork struct{ to string }

func (rn redirectNetwork) ClusterListener(l net.Listener) net.Listener { return l }

func (rn redirectNetwork) ClusterDial(d DialFunc) DialFunc {
	return func(ctx context.Context, _ string) (net.Conn, error) { return d(ctx, rn.to) }
}

func (rn redirectNetwork) Gossip(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return t
}

// TestAdvertiseAddrOfAnotherNodeNamesIt: a node file copied with another
// node's advertise_addr, and no cluster setting (the cluster port binds
// every address, the default with join, and is advertised at that IP),
// reaches the other node's cluster port: the start is refused, and the
// error tells the operator to change advertise_addr, the setting in the
// file. It named cluster_advertise_addr and cluster_addr before, which the
// file does not have. (Every cluster dial of the node goes to a's cluster
// port: on loopback the node's own IP reaches the node.)
func TestAdvertiseAddrOfAnotherNodeNamesIt(t *testing.T) {
	up := origin(t, "a")
	a := startClusterNode(t, "a", up)
	extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\nadvertise_addr: 127.0.0.1\ncluster_addr: 0.0.0.0:0\n"+
		"upgrade_socket: %s\njoin: [%q]\n", filepath.Join(t.TempDir(), "up.sock"), a.Members().Addr())
	cfg, err := config.LoadNode(writeNodeFiles(t, "c", extra, clusterFor(up)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, Options{Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Network: redirectNetwork{to: a.RPCAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Shutdown(ctx)
		t.Fatal("a node whose advertised cluster address reaches another node started")
	}
	msg := err.Error()
	if !strings.Contains(msg, `reaches node "a", not this node`) || !strings.Contains(msg, "give this node its own advertise_addr") ||
		strings.Contains(msg, "its own cluster_advertise_addr") || strings.Contains(msg, "its own cluster_addr") {
		t.Fatalf("Start: %v\nwant the fix to name advertise_addr, the setting the node file has", err)
	}
}

// TestRefusedNewcomerNotReady: a node whose seed turns it away (another
// cluster_name, here) is not ready, though it has a config of its own
// (its file, without a data_dir) and would serve it: a load balancer would
// send traffic to a node the cluster refused, with a cache and rate limits
// of its own. /readyz and /status say why; /status's join status says
// refused. Once it joins (the same cluster_name), it is ready.
func TestRefusedNewcomerNotReady(t *testing.T) {
	up := origin(t, "a")
	n1 := startClusterNode(t, "n1", up)
	seed := n1.Members().Addr()
	extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\nupgrade_socket: %s\njoin: [%q]\ncluster_name: other\n",
		filepath.Join(t.TempDir(), "up.sock"), seed)
	n2 := startNode(t, writeNodeFiles(t, "n2", extra, clusterFor(up)))
	waitUntil(t, "n2's join refused", func() bool { return n2.Members().JoinStatus().Refused })
	code, body := get(t, "http://"+n2.AdminAddr()+"/readyz")
	if code != 503 || !strings.Contains(body, "not joined") || !strings.Contains(body, "cluster_name") {
		t.Fatalf("/readyz of a refused node: %d %s, want 503 naming the refusal", code, body)
	}
	st := n2.Status()
	if st.Node.Ready || !strings.Contains(st.Node.NotReady, "not joined") || st.Gossip == nil || !st.Gossip.Join.Refused {
		t.Fatalf("/status of a refused node: ready=%v not_ready=%q join=%+v", st.Node.Ready, st.Node.NotReady, st.Gossip)
	}
	// The same node with the cluster's name joins and is ready.
	extra = strings.Replace(extra, "cluster_name: other\n", "", 1)
	n3 := startNode(t, writeNodeFiles(t, "n3", extra, clusterFor(up)))
	waitUntil(t, "n3 joined and ready", func() bool {
		c, _ := get(t, "http://"+n3.AdminAddr()+"/readyz")
		return c == 200 && n3.Members().JoinStatus().Joined
	})
}
