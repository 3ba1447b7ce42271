package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pingora-go/pingora-go/node"
)

// cmdDemo runs a 3-node cluster (gossip, and RPC and raft on one cluster
// port per node) and two sample upstreams on loopback until Ctrl-C. Each
// node is its own process, so one can be killed to watch the others
// notice.
var demoCmd = command{name: "demo", args: "",
	about: "Run a local cluster on loopback: 3 node processes (gossip, one cluster port for RPC and raft)\nand two sample upstreams, " +
		"printing the URLs to try. Ctrl-C stops it."}

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := demoCmd.newFlags()
	pos, code, done := demoCmd.parse(fs, args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) > 0 {
		return demoCmd.usageError(fs, stderr, "takes no arguments")
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node demo:", err)
		return 1
	}
	sigs := make(chan os.Signal, 1) // one Ctrl-C is enough
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	d := &demo{exe: exe, stdout: stdout, stderr: stderr, sigs: sigs, startWithin: 30 * time.Second, agreeWithin: 30 * time.Second}
	return d.run()
}

// demo is one run of "pingora-node demo".
type demo struct {
	exe            string // the pingora-node binary the nodes run
	stdout, stderr io.Writer
	sigs           <-chan os.Signal // stops the demo
	// startWithin bounds how long the nodes take to serve their admin
	// API, and agreeWithin how long they then take to agree on the
	// cluster config (30s each in the CLI).
	startWithin, agreeWithin time.Duration
	// pick returns the address a node binds: preferred when it looks
	// free (nil: freeAddr). given is every address picked in this run.
	pick  func(preferred string) string
	given map[string]bool

	dir   string
	keep  bool        // keep dir (the nodes' logs) after a failure
	nodes []*demoNode // every node started so far; run stops them all
}

// run starts the upstreams and the nodes, waits until the nodes agree on
// the config and until a signal, and stops every node it started,
// whatever ends it. The directory of node files and logs is removed,
// unless the nodes failed to start or agree.
func (d *demo) run() int {
	dir, err := os.MkdirTemp("", "pingora-demo-")
	if err != nil {
		fmt.Fprintln(d.stderr, "pingora-node demo:", err)
		return 1
	}
	d.dir = dir
	defer func() {
		if !d.keep {
			os.RemoveAll(dir)
		}
	}()
	var peers []string
	for _, name := range []string{"alpha", "beta"} {
		srv, addr, err := startSampleUpstream(name)
		if err != nil {
			fmt.Fprintln(d.stderr, "pingora-node demo:", err)
			return 1
		}
		defer srv.Close()
		peers = append(peers, addr)
	}
	if err := writeDemoCluster(dir, peers); err != nil {
		fmt.Fprintln(d.stderr, "pingora-node demo:", err)
		return 1
	}
	defer func() { stopDemoNodes(d.nodes) }() // d.nodes as it is on return
	seed := ""
	deadline := time.Now().Add(d.startWithin)
	for i := range demoNodes {
		n, stop, err := d.startNode(dir, i, seed, deadline)
		if stop {
			return 0
		}
		if err != nil {
			d.keep = true
			fmt.Fprintf(d.stderr, "pingora-node demo: %v; logs kept in %s\n", err, dir)
			return 1
		}
		if seed == "" {
			seed = n.gossip
		}
	}
	if stop, err := d.waitAgreed(); stop || err != nil {
		if err != nil {
			d.keep = true
			fmt.Fprintf(d.stderr, "pingora-node demo: %v; logs kept in %s\n", err, dir)
			return 1
		}
		return 0
	}
	printDemoHelp(d.stdout, d.nodes, dir)
	<-d.sigs
	fmt.Fprintln(d.stdout, "\nstopping...")
	stopDemoNodes(d.nodes)
	if bad := demoLogErrors(dir, d.nodes); len(bad) > 0 {
		d.keep = true
		fmt.Fprintf(d.stderr, "pingora-node demo: the nodes logged errors; logs kept in %s:\n%s\n", dir, strings.Join(bad, "\n"))
		return 1
	}
	fmt.Fprintln(d.stdout, "stopped")
	return 0
}

// demoLogErrors returns the lines of the nodes' logs that are errors or
// not JSON: a normal run and stop logs neither (issue 12).
func demoLogErrors(dir string, nodes []*demoNode) []string {
	var bad []string
	for _, n := range nodes {
		b, err := os.ReadFile(filepath.Join(dir, n.name+".log"))
		if err != nil {
			bad = append(bad, n.name+": "+err.Error())
			continue
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" && (!json.Valid([]byte(l)) || strings.Contains(l, `"level":"ERROR"`)) {
				bad = append(bad, n.name+": "+l)
			}
		}
	}
	return bad
}

// demoStartAttempts bounds how many times the demo starts a node that
// exits because a port it was given was taken meanwhile.
const demoStartAttempts = 3

// errPortTaken is why a node exited when an address it was given turned
// out taken: picked free, it was bound by another process (another demo,
// a test) or given to an outgoing connection (an ephemeral port) before
// the node bound it.
var errPortTaken = errors.New("a port it was given was taken before it bound it")

// startNode starts node i and waits until it serves: its pid file names
// its process (the node writes it once every listener is bound, so an
// admin API answering on its address is its own, not another demo's) and
// its admin API answers. A node that exits because one of its ports was
// taken meanwhile is started again on other ports. stop is true when a
// signal came first.
func (d *demo) startNode(dir string, i int, seed string, deadline time.Time) (n *demoNode, stop bool, err error) {
	for attempt := 1; ; attempt++ {
		n, err = startDemoNode(d.exe, dir, i, seed, d.addr)
		if err != nil {
			return nil, false, err
		}
		d.nodes = append(d.nodes, n) // stopped by run whatever happens
		stop, err = d.waitServing(n, dir, deadline)
		if stop || err == nil || !errors.Is(err, errPortTaken) || attempt == demoStartAttempts {
			return n, stop, err
		}
		d.nodes = d.nodes[:len(d.nodes)-1] // it exited
		os.RemoveAll(filepath.Join(dir, n.name+"-data"))
	}
}

// waitServing waits until n serves (startNode), exits, or the deadline
// passes.
func (d *demo) waitServing(n *demoNode, dir string, deadline time.Time) (stop bool, err error) {
	pidFile := filepath.Join(dir, n.name+".pid")
	for {
		if b, err := os.ReadFile(pidFile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(n.cmd.Process.Pid) && adminUp(n.admin) {
			return false, nil
		}
		select {
		case <-n.exited:
			if b, _ := os.ReadFile(filepath.Join(dir, n.name+".log")); bytes.Contains(b[min(n.logFrom, int64(len(b))):], []byte("address already in use")) {
				return false, fmt.Errorf("%s exited: %w", n.name, errPortTaken)
			}
			return false, fmt.Errorf("%s exited before it served", n.name)
		case <-d.sigs:
			return true, nil
		case <-time.After(50 * time.Millisecond): // polling the node starting
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("%s did not serve within %v", n.name, d.startWithin)
		}
	}
}

// addr returns an address for a node to bind: preferred when it looks
// free, else one the kernel picks; never one picked before in this run
// (the kernel may hand a port just closed out again).
func (d *demo) addr(preferred string) string {
	pick := d.pick
	if pick == nil {
		pick = freeAddr
	}
	if d.given == nil {
		d.given = map[string]bool{}
	}
	a := pick(preferred)
	for range 10 {
		if !d.given[a] {
			break
		}
		a = pick("127.0.0.1:0")
	}
	d.given[a] = true
	return a
}

// waitAgreed writes the demo's config through the admin API of the first
// node (forwarded to the raft leader) and waits until every node applied
// it and places cache keys on one ring of every node (so what the banner
// suggests holds from the first request). stop is true when a signal came
// first.
func (d *demo) waitAgreed() (stop bool, err error) {
	deadline := time.Now().Add(d.agreeWithin)
	for seeded := false; !seeded || !allApplied(d.nodes); {
		if !time.Now().Before(deadline) {
			return false, fmt.Errorf("the nodes did not agree on a config within %v", d.agreeWithin)
		}
		if !seeded {
			seeded = seedDemoConfig(d.nodes[0].admin, filepath.Join(d.dir, "cluster.yaml"))
		}
		select {
		case <-d.sigs:
			return true, nil
		case <-time.After(50 * time.Millisecond): // polling the cluster forming
		}
	}
	return false, nil
}

// adminUp: the admin API at addr answers /healthz.
func adminUp(addr string) bool {
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// demoNode is one node process of the demo.
type demoNode struct {
	name, proxy, admin, gossip string
	cmd                        *exec.Cmd
	exited                     chan struct{}
	logFrom                    int64 // where this process's lines start in its log
}

// demoNodes is how many nodes the demo cluster runs.
const demoNodes = 3

// seedDemoConfig writes the demo's cluster config as version 1 through
// the admin API; false means the cluster cannot take writes yet.
func seedDemoConfig(admin, file string) bool {
	body, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+admin+"/v1/config", bytes.NewReader(body))
	req.Header.Set("If-Match", "0") // only if no config exists yet
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusConflict
}

// allApplied reports whether every node applied the config and the
// nodes agree on one cache ring of all of them (demoAgreed).
func allApplied(nodes []*demoNode) bool {
	var sts []node.Status
	for _, n := range nodes {
		resp, err := http.Get("http://" + n.admin + "/status")
		if err != nil {
			return false
		}
		var st node.Status
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			return false
		}
		sts = append(sts, st)
	}
	return demoAgreed(sts)
}

// demoAgreed reports whether the nodes whose status is sts all applied a
// config, see every one of them alive, and place cache keys on one ring
// (the same version) of all of them. A node whose ring still lacks a peer
// (its metadata not gossiped yet) would send a key elsewhere than the
// others do: the first request for it on that node misses.
func demoAgreed(sts []node.Status) bool {
	var ring uint64
	for i, st := range sts {
		if st.Config == nil || st.Config.Version < 1 || st.Cache == nil {
			return false
		}
		alive := 0
		for _, m := range st.Members {
			if m.State == "alive" {
				alive++
			}
		}
		d := st.Cache.Detail
		if alive != len(sts) || d.RingMembers != len(sts) || d.RingVersion == 0 || (i > 0 && d.RingVersion != ring) {
			return false
		}
		ring = d.RingVersion
	}
	return len(sts) > 0
}

// stopDemoNodes stops every node still running, by PID, and waits.
func stopDemoNodes(nodes []*demoNode) {
	for _, n := range nodes {
		n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range nodes {
		select {
		case <-n.exited:
		case <-time.After(15 * time.Second):
			n.cmd.Process.Kill()
			<-n.exited
		}
	}
}

// startSampleUpstream serves a small origin that names itself.
func startSampleUpstream(name string) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", name)
		if strings.HasPrefix(r.URL.Path, "/static/") {
			w.Header().Set("Cache-Control", "public, max-age=60")
		}
		fmt.Fprintf(w, "hello from upstream %s: %s %s (%s, forwarded for %s)\n", name, r.Method, r.URL.RequestURI(), r.Proto, r.Header.Get("X-Forwarded-For"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return srv, ln.Addr().String(), nil
}

// freeAddr returns preferred when it can be bound, else a free port.
func freeAddr(preferred string) string {
	ln, err := net.Listen("tcp", preferred)
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return preferred
		}
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeDemoCluster(dir string, peers []string) error {
	cluster := fmt.Sprintf(`# demo cluster config: two upstreams; /static/ is cached once for the
# whole cluster (its ring owner fills it), /api/ is rate limited across the cluster
upstreams:
  - name: demo
    lb: round_robin
    health_check: {type: http, path: /, interval: 2s}
    peers:
      - addr: %s
      - addr: %s
routes:
  - host: "*"
    path_prefix: /static/
    upstream: demo
    cache: {enabled: true, shared: true}
  - host: "*"
    path_prefix: /
    upstream: demo
rate_limits:
  - name: api
    match: {path_prefix: /api/}
    key: client_ip
    limit: 5
    period: 10s
    scope: global
    headers: true
`, peers[0], peers[1])
	return os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(cluster), 0o644)
}

// startDemoNode writes node i's file and starts "pingora-node run" on it,
// on addresses from addr.
func startDemoNode(exe, dir string, i int, seed string, addr func(preferred string) string) (*demoNode, error) {
	n := &demoNode{
		name:   fmt.Sprintf("demo-%d", i+1),
		admin:  addr(fmt.Sprintf("127.0.0.1:%d", 9090+i)),
		proxy:  addr(fmt.Sprintf("127.0.0.1:%d", 8080+i)),
		gossip: addr(fmt.Sprintf("127.0.0.1:%d", 7946+10*i)),
		exited: make(chan struct{}),
	}
	join := ""
	if seed != "" {
		join = "join: [" + seed + "]\n"
	}
	nodeFile := fmt.Sprintf(`name: %[1]s
admin_addr: %[2]s
listeners:
  - name: http
    addr: %[3]s
    h2c: true
log_level: warn
gossip_addr: %[4]s
gossip_profile: fast
cluster_name: demo
data_dir: %[1]s-data
cluster_addr: %[5]s
bootstrap_expect: %[6]d
%[7]supgrade_socket: %[1]s.sock
`, n.name, n.admin, n.proxy, n.gossip, addr("127.0.0.1:0"), demoNodes, join)
	path := filepath.Join(dir, n.name+".yaml")
	if err := os.WriteFile(path, []byte(nodeFile), 0o644); err != nil {
		return nil, err
	}
	// Appended to: a node started again after a port clash (startNode)
	// keeps the first attempt's lines, and reads only its own (logFrom).
	logf, err := os.OpenFile(filepath.Join(dir, n.name+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	if fi, err := logf.Stat(); err == nil {
		n.logFrom = fi.Size()
	}
	defer logf.Close() // the child holds its own descriptor
	n.cmd = exec.Command(exe, "run", "--config", path, "--pid-file", filepath.Join(dir, n.name+".pid"))
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches the demo, which stops the nodes in order
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		n.cmd.Wait()
		close(n.exited)
	}()
	return n, nil
}

func printDemoHelp(w io.Writer, nodes []*demoNode, dir string) {
	fmt.Fprintf(w, "pingora-node demo is running: %d node processes (gossip, and RPC and raft on one cluster port each), two sample upstreams, round robin.\nfiles and logs: %s\n\n", len(nodes), dir)
	for _, n := range nodes {
		fmt.Fprintf(w, "  %s  pid %-7d proxy http://%s  admin http://%s\n", n.name, n.cmd.Process.Pid, n.proxy, n.admin)
	}
	last := nodes[len(nodes)-1]
	fmt.Fprintf(w, `
Try:
  curl -i http://%[1]s/hello                        # HTTP/1.1, alternates alpha/beta
  curl -i --http2-prior-knowledge http://%[1]s/h2   # HTTP/2 cleartext (h2c)
  curl -si -H 'Host: shop.test' http://%[1]s/static/logo   # cached for the whole cluster: the key's ring owner fills it
  curl -si -H 'Host: shop.test' http://%[5]s/static/logo   # from the origin once; every node then answers "Cache-Status: ...; hit"
  for p in %[1]s %[5]s %[1]s %[5]s %[1]s %[5]s %[1]s; do curl -s -o /dev/null -w '%%{http_code} ' http://$p/api/x; done; echo
                                                    # /api/ admits 5 requests per 10 s per client across all nodes together, then 429;
                                                    # each node spends tokens leased from the key's owner, so one node's 429 may come
                                                    # before another node's last 200 (README: Rate limits, scope: global)
  curl http://%[2]s/status                          # node status (JSON): members, ring, raft, upstreams, cache, rate limits
  xdg-open http://%[2]s/ui                          # the live cluster page (or paste it into any browser on this machine)
  go run ./cmd/pingora-node members --admin http://%[2]s
  go run ./cmd/pingora-node status --admin http://%[2]s
  go run ./cmd/pingora-node config get --admin http://%[2]s > new.yaml    # edit, then:
  go run ./cmd/pingora-node config apply -f new.yaml --admin http://%[2]s # every node switches
  kill -9 %[3]d    # %[4]s dies; "members" on the others shows it dead within about a second

Press Ctrl-C to stop.
`, nodes[0].proxy, nodes[0].admin, last.cmd.Process.Pid, last.name, nodes[1].proxy)
}
