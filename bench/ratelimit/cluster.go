package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// cluster is pingora-node processes on loopback, started from node files
// with flags only through the binary's own command line.
type cluster struct {
	bin, dir, origin string
	limit            int
	nodes            []*nodeProc
	seed             string // the first node's gossip address
}

type nodeProc struct {
	name, admin, proxy, gossip, rpc string
	cmd                             *exec.Cmd
	dead                            bool
}

func freePort() string { return freePortOn("127.0.0.1") }

// freePortOn returns a free host:port on the loopback address ip.
func freePortOn(ip string) string {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newCluster(bin, origin string, limit int) (*cluster, error) {
	dir, err := os.MkdirTemp("", "rlb")
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, dir: dir, origin: origin, limit: limit}
	doc := fmt.Sprintf(`upstreams:
  - name: web
    peers: [{addr: %s}]
routes:
  - upstream: web
rate_limits:
  - name: api
    key: header:x-api-key
    limit: %d
    period: 1s
    scope: global
`, origin, limit)
	return c, os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(doc), 0o644)
}

// start starts one more node, joined to the first.
func (c *cluster) start() (*nodeProc, error) {
	n := &nodeProc{name: fmt.Sprintf("n%d", len(c.nodes)+1), admin: freePort(), proxy: freePort(), gossip: freePort(), rpc: freePort()}
	body := fmt.Sprintf("name: %s\nadmin_addr: %s\nlisteners:\n  - {name: http, addr: %s}\ncluster_config: cluster.yaml\n"+
		"gossip_addr: %s\ngossip_profile: fast\ncluster_addr: %s\nupgrade_socket: %s.sock\ngrace_period: 2s\nlog_level: warn\n",
		n.name, n.admin, n.proxy, n.gossip, n.rpc, n.name)
	if c.seed != "" {
		body += "join: [" + c.seed + "]\n"
	} else {
		c.seed = n.gossip
	}
	file := filepath.Join(c.dir, n.name+".yaml")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(c.dir, n.name+".log"))
	if err != nil {
		return nil, err
	}
	n.cmd = exec.Command(c.bin, "run", "--config", file)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	c.nodes = append(c.nodes, n)
	return n, nil
}

// status is the part of /status the driver reads.
type status struct {
	Node struct {
		Ready bool `json:"ready"`
	} `json:"node"`
	Ring *struct {
		Members []string `json:"members"`
	} `json:"ring"`
	RateLimits *struct {
		Rules []struct {
			Top []struct {
				Key   string `json:"key"`
				Owner string `json:"owner"`
			} `json:"top"`
		} `json:"rules"`
	} `json:"rate_limits"`
}

func (n *nodeProc) status() (*status, error) {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + n.admin + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st status
	return &st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitRing waits until every live node is ready with a ring of want
// members, for at most a minute.
func (c *cluster) waitRing(want int) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		ok := true
		for _, n := range c.live() {
			st, err := n.status()
			if err != nil || !st.Node.Ready || st.Ring == nil || len(st.Ring.Members) != want {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // sleep-ok: polling the admin API
	}
	return fmt.Errorf("the ring did not reach %d members within a minute (logs in %s)", want, c.dir)
}

// owner asks a live node which node owns key (once it has used it).
func (c *cluster) owner(key string) string {
	for _, n := range c.live() {
		st, err := n.status()
		if err != nil || st.RateLimits == nil {
			continue
		}
		for _, r := range st.RateLimits.Rules {
			for _, k := range r.Top {
				if k.Key == key && k.Owner != "" {
					return k.Owner
				}
			}
		}
	}
	return ""
}

func (c *cluster) live() []*nodeProc {
	var out []*nodeProc
	for _, n := range c.nodes {
		if !n.dead {
			out = append(out, n)
		}
	}
	return out
}

func (c *cluster) proxies() []string {
	var out []string
	for _, n := range c.live() {
		out = append(out, n.proxy)
	}
	return out
}

func (c *cluster) node(name string) *nodeProc {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// kill sends SIGKILL to one node, by its PID.
func (c *cluster) kill(n *nodeProc) {
	n.cmd.Process.Signal(syscall.SIGKILL)
	n.cmd.Wait()
	n.dead = true
}

// stop ends every node this driver started: SIGTERM, then SIGKILL after
// 10 s, each by PID; the files go unless keep is set.
func (c *cluster) stop(keep bool) {
	for _, n := range c.live() {
		n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range c.live() {
		done := make(chan struct{})
		go func() { n.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			n.cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
		n.dead = true
	}
	if !keep {
		os.RemoveAll(c.dir)
	}
}
