package nodetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/node/config"
)

// Config describes a Cluster. Zero fields take their defaults.
type Config struct {
	// N is the number of nodes (default 3).
	N int
	// ClusterConfig is the cluster config file every node has; the leader
	// writes it as version 1 (default: a route from every host to one
	// origin that answers "v1", see Origin).
	ClusterConfig string
	// Extra is appended to every node file (default none).
	Extra string
	// LogLevel is the nodes' log level; their lines go to t.Log (default
	// info).
	LogLevel slog.Level
}

// Cluster is N nodes in one test process with Faults between them.
type Cluster struct {
	t      testing.TB
	cfg    Config
	Faults *Faults
	nodes  []*Node
	log    *logSink

	origins []*httptest.Server // closed by stop, after the nodes
	http    *http.Client       // the test's requests to the nodes
}

// Node is one node of a Cluster, across its kills and restarts.
type Node struct {
	Name string
	c    *Cluster
	dir  string

	sub string // the node file's fixed part; start adds addresses

	mu   sync.Mutex
	n    *node.Node // nil while killed
	last addrs      // where the killed node was bound, for Restart
}

// Start starts cfg.N nodes that gossip, replicate the cluster config with
// raft and serve the cluster RPC, and waits until each is ready, has
// applied version 1 and holds the same ring of N members. Everything is
// stopped when the test ends.
func Start(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.N == 0 {
		cfg.N = 3
	}
	c := &Cluster{t: t, cfg: cfg, Faults: newFaults(), log: newLogSink(t),
		http: &http.Client{Transport: &http.Transport{}, Timeout: 15 * time.Second}}
	t.Cleanup(c.stop)
	if c.cfg.ClusterConfig == "" {
		c.cfg.ClusterConfig = Route(c.Origin("v1"))
	}
	for i := range cfg.N {
		nd := &Node{Name: fmt.Sprintf("n%d", i+1), c: c, dir: t.TempDir()}
		if err := os.WriteFile(filepath.Join(nd.dir, "cluster.yaml"), []byte(c.cfg.ClusterConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		nd.sub = fmt.Sprintf("name: %s\ncluster_config: cluster.yaml\ngrace_period: 5s\ngossip_profile: fast\n"+
			"data_dir: %s\nbootstrap_expect: %d\nupgrade_socket: %s\n%s",
			nd.Name, filepath.Join(nd.dir, "data"), cfg.N, filepath.Join(nd.dir, "up.sock"), cfg.Extra)
		var seeds []string
		if i > 0 {
			seeds = []string{c.nodes[0].Node().Members().Addr()}
		}
		if err := nd.start(addrs{gossip: "127.0.0.1:0", cluster: "127.0.0.1:0", admin: "127.0.0.1:0", http: "127.0.0.1:0"}, seeds); err != nil {
			t.Fatalf("start %s: %v", nd.Name, err)
		}
		c.nodes = append(c.nodes, nd)
	}
	d := c.WaitFor("every node ready on version 1 and one ring", 90*time.Second, func() bool {
		v, _, ok := c.Agreed()
		return ok && v == 1 && c.allReady()
	})
	c.Logf("nodetest: %d nodes ready and agreed in %s", cfg.N, d)
	return c
}

// addrs are the addresses a node binds; raft shares the cluster port.
type addrs struct{ gossip, cluster, admin, http string }

// start builds and starts the node on a, joining seeds.
func (nd *Node) start(a addrs, seeds []string) error {
	file := nd.sub + fmt.Sprintf("admin_addr: %s\nlisteners:\n  - name: http\n    addr: %s\n    h2c: true\n"+
		"gossip_addr: %s\ncluster_addr: %s\n", a.admin, a.http, a.gossip, a.cluster)
	if len(seeds) > 0 {
		js, _ := json.Marshal(seeds)
		file += "join: " + string(js) + "\n"
	}
	path := filepath.Join(nd.dir, "node.yaml")
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		return err
	}
	cfg, err := config.LoadNode(path)
	if err != nil {
		return err
	}
	n, err := node.New(cfg, node.Options{Version: "nodetest", Log: nd.c.log.logger(nd.c.cfg.LogLevel),
		AccessLog: io.Discard, NoHandoff: true, Network: nd.c.Faults.Network(nd.Name)})
	if err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	nd.mu.Lock()
	nd.n = n
	nd.mu.Unlock()
	return nil
}

// bound returns the addresses the running node is bound to.
func (nd *Node) bound() addrs {
	n := nd.Node()
	return addrs{gossip: n.Members().Addr(), cluster: n.RPCAddr(), admin: n.AdminAddr(), http: n.ListenerAddrs()["http"]}
}

// Node returns the running node.Node, or nil while the node is killed.
func (nd *Node) Node() *node.Node {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.n
}

// Running reports whether the node runs (it is not killed).
func (nd *Node) Running() bool { return nd.Node() != nil }

// Admin returns the node's admin URL, "http://host:port".
func (nd *Node) Admin() string { return "http://" + nd.Node().AdminAddr() }

// Proxy returns the node's proxy URL, "http://host:port".
func (nd *Node) Proxy() string { return "http://" + nd.Node().ListenerAddrs()["http"] }

// ConfigVersion returns the cluster config version the node serves (0:
// none).
func (nd *Node) ConfigVersion() int64 {
	if c := nd.Node().Status().Config; c != nil {
		return c.Version
	}
	return 0
}

// IsLeader reports whether the node leads raft now.
func (nd *Node) IsLeader() bool {
	n := nd.Node()
	return n != nil && n.Store() != nil && n.Store().IsLeader()
}

// LeaderID returns the raft leader the node knows of, "" for none.
func (nd *Node) LeaderID() string {
	id, _ := nd.Node().Store().Leader()
	return id
}

// Get sends GET path through the node's proxy and returns the status
// and body (0 and the error text when the request fails).
func (nd *Node) Get(path string) (int, string) {
	return nd.c.do(http.MethodGet, nd.Proxy()+path, "", nil)
}

// PutConfig writes a cluster config through the node's admin API (If-Match:
// ifMatch when not empty) and returns the status and body.
func (nd *Node) PutConfig(body, ifMatch string) (int, string) {
	h := map[string]string{}
	if ifMatch != "" {
		h["If-Match"] = ifMatch
	}
	return nd.c.do(http.MethodPut, nd.Admin()+"/v1/config", body, h)
}

func (c *Cluster) do(method, url, body string, header map[string]string) (int, string) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Nodes returns every node, killed ones too, in name order (n1, n2, ...).
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns the node named name; the test fails if there is none.
func (c *Cluster) Node(name string) *Node {
	for _, nd := range c.nodes {
		if nd.Name == name {
			return nd
		}
	}
	c.t.Fatalf("nodetest: no node %q", name)
	return nil
}

// Running returns the nodes not killed.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, nd := range c.nodes {
		if nd.Running() {
			out = append(out, nd)
		}
	}
	return out
}

// Names returns the names of nodes.
func Names(nodes ...*Node) []string {
	out := make([]string, len(nodes))
	for i, nd := range nodes {
		out[i] = nd.Name
	}
	return out
}

// Leader returns the running node that leads raft, or nil.
func (c *Cluster) Leader() *Node {
	for _, nd := range c.Running() {
		if nd.IsLeader() {
			return nd
		}
	}
	return nil
}

// Agreed reports whether every running node serves the same config
// version and holds the same ring, of every running node; it returns
// that version and ring digest.
func (c *Cluster) Agreed() (version int64, digest string, ok bool) {
	return Agreed(c.Running()...)
}

// Agreed reports whether nodes serve the same config version and hold
// the same ring, whose members are exactly nodes.
func Agreed(nodes ...*Node) (version int64, digest string, ok bool) {
	for i, nd := range nodes {
		n := nd.Node()
		if n == nil {
			return 0, "", false
		}
		r := n.Members().Ring()
		v := nd.ConfigVersion()
		if i == 0 {
			version, digest = v, r.Digest()
		}
		if v != version || r.Digest() != digest || r.Len() != len(nodes) {
			return 0, "", false
		}
	}
	return version, digest, len(nodes) > 0
}

func (c *Cluster) allReady() bool {
	for _, nd := range c.Running() {
		if !nd.Node().Status().Node.Ready {
			return false
		}
	}
	return true
}

// WaitFor polls cond every 10ms until it holds, and fails the test after
// timeout. It returns how long it took.
func (c *Cluster) WaitFor(what string, timeout time.Duration, cond func() bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(start) > timeout {
			c.t.Fatalf("nodetest: timed out after %s waiting for %s; the nodes:\n%s", timeout, what, c.Describe())
		}
		<-tick.C
	}
	return time.Since(start)
}

// Describe says how each node sees the cluster: its config version,
// ring and raft role, one line per node.
func (c *Cluster) Describe() string {
	var b strings.Builder
	for _, nd := range c.nodes {
		n := nd.Node()
		if n == nil {
			fmt.Fprintf(&b, "  %s: not running\n", nd.Name)
			continue
		}
		r := n.Members().Ring()
		fmt.Fprintf(&b, "  %s: config v%d, ring %s %v", nd.Name, nd.ConfigVersion(), r.Digest(), r.Members())
		if st := n.Store(); st != nil {
			rs := st.Status()
			fmt.Fprintf(&b, ", raft %s term %d leader %q applied %d, voters %d", rs.State, rs.Term, rs.LeaderID, rs.AppliedIndex, len(rs.Voters))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Logf logs a harness line among the nodes' lines.
func (c *Cluster) Logf(format string, args ...any) {
	c.t.Helper()
	c.log.write(fmt.Sprintf(format, args...))
}

// Kill stops the node abruptly: it is cut off first (gossip dropped,
// cluster-port connections reset, dials refused), then stopped, so peers
// see neither its draining nor its leave nor a raft hand-over: they see
// a node vanish. Its data dir stays for Restart.
func (c *Cluster) Kill(name string) {
	c.t.Helper()
	nd := c.Node(name)
	n := nd.Node()
	if n == nil {
		c.t.Fatalf("nodetest: kill %s: not running", name)
	}
	var peers []string
	for _, o := range c.nodes {
		if o != nd {
			peers = append(peers, o.Name)
		}
	}
	a := nd.bound()
	c.Faults.isolate(name, peers)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.Shutdown(ctx)
	nd.mu.Lock()
	nd.n, nd.last = nil, a
	nd.mu.Unlock()
	c.Faults.release(name)
	c.Logf("nodetest: killed %s", name)
}

// Stop shuts the node down gracefully (it drains, leaves gossip and hands
// raft leadership over), as SIGTERM does, and waits for it. Restart
// starts it again.
func (c *Cluster) Stop(name string) {
	c.t.Helper()
	nd := c.Node(name)
	n := nd.Node()
	if n == nil {
		c.t.Fatalf("nodetest: stop %s: not running", name)
	}
	a := nd.bound()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.Shutdown(ctx)
	nd.mu.Lock()
	nd.n, nd.last = nil, a
	nd.mu.Unlock()
	c.Logf("nodetest: stopped %s", name)
}

// Wipe deletes the data dir of a killed or stopped node, as a lost disk
// does: Restart then starts it under the same name and addresses with an
// empty one.
func (c *Cluster) Wipe(name string) {
	c.t.Helper()
	nd := c.Node(name)
	if nd.Running() {
		c.t.Fatalf("nodetest: wipe %s: it runs", name)
	}
	if err := os.RemoveAll(filepath.Join(nd.dir, "data")); err != nil {
		c.t.Fatalf("nodetest: wipe %s: %v", name, err)
	}
	c.Logf("nodetest: wiped the data dir of %s", name)
}

// Restart starts a killed or stopped node again: the same name, data dir and
// addresses, joining every other node.
func (c *Cluster) Restart(name string) {
	c.t.Helper()
	nd := c.Node(name)
	nd.mu.Lock()
	a, running := nd.last, nd.n != nil
	nd.mu.Unlock()
	if running {
		c.t.Fatalf("nodetest: restart %s: it runs", name)
	}
	var seeds []string
	for _, o := range c.Running() {
		seeds = append(seeds, o.Node().Members().Addr())
	}
	if err := nd.start(a, seeds); err != nil {
		c.t.Fatalf("nodetest: restart %s: %v", name, err)
	}
	c.Logf("nodetest: restarted %s", name)
}

// stop shuts every running node down and closes the fault injector.
func (c *Cluster) stop() {
	var wg sync.WaitGroup
	for _, nd := range c.Running() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			nd.Node().Shutdown(ctx)
		}()
	}
	wg.Wait()
	c.http.CloseIdleConnections()
	c.Faults.wf.Close()
	for _, o := range c.origins {
		o.Close()
	}
}

// Origin starts an HTTP origin that answers body to every request and
// returns its "host:port"; it stops when the test ends, after the nodes.
func (c *Cluster) Origin(body string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	c.origins = append(c.origins, srv)
	return srv.Listener.Addr().String()
}

// Route returns a cluster config that sends every request to the origin
// at addr.
func Route(addr string) string {
	return fmt.Sprintf("upstreams:\n  - name: web\n    peers:\n      - addr: %s\nroutes:\n  - host: \"*\"\n    upstream: web\n", addr)
}
