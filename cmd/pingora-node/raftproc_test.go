package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node"
)

// procNode is one pingora-node process of a test cluster: its files,
// addresses and the running command.
type procNode struct {
	name, dir                      string
	admin, proxy, gossip, raftAddr string
	join                           []string
	cmd                            *exec.Cmd
	log                            *logFile
	exited                         chan struct{} // closed when cmd.Wait returned
	exitErr                        error
	extraYAML                      string
}

// raftCluster starts real node processes on loopback (fast gossip and raft
// timings) and stops every one it started when the test ends.
type raftCluster struct {
	t     *testing.T
	nodes []*procNode
}

// newRaftCluster prepares n nodes, n1..nN, each joining all the others and
// bootstrapping together; start them with startAll.
func newRaftCluster(t *testing.T, n int) *raftCluster {
	c := &raftCluster{t: t}
	for i := range n {
		c.nodes = append(c.nodes, c.newNode(fmt.Sprintf("n%d", i+1)))
	}
	for _, p := range c.nodes {
		for _, q := range c.nodes {
			if q != p {
				p.join = append(p.join, q.gossip)
			}
		}
		p.extraYAML = fmt.Sprintf("bootstrap_expect: %d\n", n)
	}
	return c
}

// newNode prepares a node's directory and addresses.
func (c *raftCluster) newNode(name string) *procNode {
	dir, err := os.MkdirTemp("", "pc") // short: it holds the upgrade socket
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(
		"upstreams:\n  - name: web\n    peers: [{addr: 127.0.0.1:1}]\nroutes:\n  - upstream: web\n"), 0o644)
	return &procNode{name: name, dir: dir, admin: freePort(c.t), proxy: freePort(c.t),
		gossip: freePort(c.t), raftAddr: freePort(c.t)}
}

func (p *procNode) writeNodeFile() string {
	js, _ := json.Marshal(p.join)
	path := filepath.Join(p.dir, "node.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`name: %s
admin_addr: %s
listeners:
  - {name: http, addr: %s}
cluster_config: cluster.yaml
gossip_addr: %s
gossip_profile: fast
cluster_addr: %s
data_dir: data
upgrade_socket: up.sock
log_level: info
grace_period: 5s
join: %s
%s`, p.name, p.admin, p.proxy, p.gossip, p.raftAddr, js, p.extraYAML)), 0o644)
	return path
}

// start launches the node's process (on its existing data dir, if any).
func (c *raftCluster) start(p *procNode) {
	c.t.Helper()
	cmd := exec.Command(binary, "run", "--config", p.writeNodeFile())
	p.log = newLogFile(c.t)
	cmd.Stderr, cmd.Stdout = p.log.f, p.log.f
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p.cmd, p.exited, p.exitErr = cmd, make(chan struct{}), nil
	go func() { p.exitErr = cmd.Wait(); close(p.exited) }()
	log := p.log
	c.t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
		if c.t.Failed() {
			c.t.Logf("%s log (last 12000 bytes):\n%s", p.name, tail(log.String(), 12000))
		}
	})
}

func (c *raftCluster) startAll() {
	for _, p := range c.nodes {
		c.start(p)
	}
}

// stop ends the node with sig and waits for the process to exit; it
// returns the exit error (nil for exit 0).
func (c *raftCluster) stop(p *procNode, sig syscall.Signal) error {
	c.t.Helper()
	p.cmd.Process.Signal(sig)
	return p.wait(c.t, 30*time.Second)
}

func (p *procNode) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.exitErr
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s", p.name, d)
		return nil
	}
}

func (p *procNode) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (c *raftCluster) running() []*procNode {
	var out []*procNode
	for _, p := range c.nodes {
		if p.cmd != nil && p.running() {
			out = append(out, p)
		}
	}
	return out
}

// status reads a node's /status; ok is false when it does not answer.
func (p *procNode) status() (node.Status, bool) {
	var st node.Status
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + p.admin + "/status")
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	return st, resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&st) == nil
}

// healthyLeader returns the leader's status when a running node leads,
// autopilot calls the cluster healthy and the voters are exactly want.
func (c *raftCluster) healthyLeader(want ...string) (node.Status, bool) {
	for _, p := range c.running() {
		st, ok := p.status()
		if !ok || st.Raft == nil || st.Raft.State != "Leader" {
			continue
		}
		var voters []string
		for _, v := range st.Raft.Voters {
			voters = append(voters, v.ID)
		}
		slices.Sort(voters)
		healthy := st.Raft.Healthy != nil && *st.Raft.Healthy
		return st, healthy && slices.Equal(voters, want) && len(st.Raft.NonVoters) == 0
	}
	return node.Status{}, false
}

// waitUntil polls cond every 50 ms for up to d and returns how long it took.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // sleep-ok: polling a condition under a deadline
	}
	return time.Since(start)
}

// leaderSees reports whether a running leader counts name unhealthy or
// out of the configuration (down), and whether it is out (gone).
func (c *raftCluster) leaderSees(name string) (down, gone bool) {
	for _, p := range c.running() {
		st, ok := p.status()
		if !ok || st.Raft == nil || st.Raft.State != "Leader" {
			continue
		}
		for _, v := range append(st.Raft.Voters, st.Raft.NonVoters...) {
			if v.ID == name {
				return v.Health == "unhealthy", false
			}
		}
		return true, true
	}
	return false, false
}

func (c *raftCluster) names() []string {
	var out []string
	for _, p := range c.nodes {
		out = append(out, p.name)
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestRestartedVotersReturn restarts each of 3 voters in turn, first after
// a graceful stop (SIGTERM), then after kill -9: each time the cluster has
// 3 voters and a healthy leader again within 15 s of the restart.
//   - bootstrap_expect_3: all three bootstrap together; each node restarts
//     as soon as the leader counts it down, and is still a voter.
//   - joiners: n1 alone, n2 and n3 join it (no bootstrap_expect); each node
//     restarts only once the leader removed it from the configuration
//     (DeadServerGrace, 2 s with fast timings), and on a new raft port (as
//     a container restarted with a new IP), so it is added back as a
//     non-voter and must be promoted. Before issue 12 it stayed an
//     unhealthy non-voter for ever: the leader kept the failed heartbeats
//     of its old replication.
func TestRestartedVotersReturn(t *testing.T) {
	for _, tc := range []struct {
		name    string
		joiners bool
	}{{"bootstrap_expect_3", false}, {"joiners", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRaftCluster(t, 3)
			if tc.joiners {
				c.nodes[0].extraYAML = ""
				for _, p := range c.nodes[1:] {
					p.extraYAML = ""
				}
				c.nodes[0].join = nil
				for _, p := range c.nodes[1:] {
					p.join = []string{c.nodes[0].gossip}
				}
			}
			c.startAll()
			all := c.names()
			formed := waitUntil(t, 60*time.Second, "3 voters and a healthy leader", func() bool {
				_, ok := c.healthyLeader(all...)
				return ok
			})
			t.Logf("cluster formed in %s", formed)
			for _, p := range c.nodes {
				for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
					c.restartVoter(p, sig, tc.joiners)
				}
			}
		})
	}
}

// restartVoter stops p with sig, waits until the leader counts it down
// (and, with removed, until it is out of the configuration), restarts it
// and waits for 3 voters and a healthy leader.
func (c *raftCluster) restartVoter(p *procNode, sig syscall.Signal, removed bool) {
	t := c.t
	t.Helper()
	if err := c.stop(p, sig); sig == syscall.SIGTERM && err != nil {
		t.Fatalf("%s: graceful stop exited with %v", p.name, err)
	}
	waitUntil(t, 15*time.Second, "the leader to see "+p.name+" down", func() bool {
		down, gone := c.leaderSees(p.name)
		return down && (gone || !removed)
	})
	if removed {
		p.raftAddr = freePort(t)
	}

	c.start(p)
	all := c.names()
	deadline := time.Now().Add(15 * time.Second)
	took := waitUntil(t, 20*time.Second, fmt.Sprintf("%s back as a voter after %s", p.name, sig), func() bool {
		_, ok := c.healthyLeader(all...)
		if !ok && time.Now().After(deadline) {
			t.Fatalf("timed out after 15s waiting for %s back as a voter after %s; raft as each node sees it:\n%s",
				p.name, sig, c.raftStatuses())
		}
		return ok
	})
	st, _ := c.healthyLeader(all...)
	t.Logf("%s restarted after %-10s: 3 voters, leader %s healthy, %s after the restart",
		p.name, strings.ToUpper(sig.String()), st.Raft.ID, took.Round(10*time.Millisecond))
}

// raftStatuses returns each running node's raft section of /status, one
// JSON line each, for a failure message: who leads, and how the leader's
// autopilot sees each server (health, last contact, stable since).
func (c *raftCluster) raftStatuses() string {
	var b strings.Builder
	for _, p := range c.running() {
		st, ok := p.status()
		if !ok || st.Raft == nil {
			fmt.Fprintf(&b, "%s: no raft status\n", p.name)
			continue
		}
		js, _ := json.Marshal(st.Raft)
		fmt.Fprintf(&b, "%s: %s\n", p.name, js)
	}
	return b.String()
}

// memberState returns name's state in p's member list, or "" if absent.
func memberState(p *procNode, name string) (string, bool) {
	st, ok := p.status()
	if !ok {
		return "", false
	}
	for _, m := range st.Members {
		if m.Name == name {
			return string(m.State), true
		}
	}
	return "", true
}

// formedCluster starts 3 nodes bootstrapping together and returns them
// with the leader's status once it has 3 voters and is healthy.
func formedCluster(t *testing.T) (*raftCluster, node.Status) {
	c := newRaftCluster(t, 3)
	c.startAll()
	var st node.Status
	waitUntil(t, 60*time.Second, "3 voters and a healthy leader", func() bool {
		var ok bool
		st, ok = c.healthyLeader(c.names()...)
		return ok
	})
	return c, st
}

// TestForceLeaveDeadNode: a node killed for good is force-left through a
// follower: the leader takes it out of raft, and every node drops it from
// its member list. A live node is refused.
func TestForceLeaveDeadNode(t *testing.T) {
	c, st := formedCluster(t)
	var follower, victim *procNode
	for _, p := range c.nodes {
		switch {
		case p.name == st.Raft.ID:
		case follower == nil:
			follower = p
		default:
			victim = p
		}
	}
	admin := "http://" + follower.admin
	if code, _, errs := cli("force-leave", victim.name, "--admin", admin); code != 1 || !strings.Contains(errs, victim.name+" is alive") ||
		!strings.Contains(errs, "If you have just stopped or killed it, gossip takes a few seconds to see it dead") {
		t.Fatalf("force-leave of a live node: exit %d, %q", code, errs)
	}
	c.stop(victim, syscall.SIGKILL)
	waitUntil(t, 15*time.Second, victim.name+" dead on "+follower.name, func() bool {
		s, _ := memberState(follower, victim.name)
		return s == "dead"
	})
	code, out, errs := cli("force-leave", victim.name, "--admin", admin)
	if code != 0 || out != victim.name+": raft removed, gossip left\n" {
		t.Fatalf("force-leave: exit %d, %q %q", code, out, errs)
	}
	took := waitUntil(t, 10*time.Second, victim.name+" out of raft and of every member list", func() bool {
		for _, p := range c.running() {
			if s, ok := memberState(p, victim.name); !ok || s != "" {
				return false
			}
		}
		_, ok := c.healthyLeader(st.Raft.ID, follower.name)
		return ok
	})
	t.Logf("%s force-left on %s: out of raft and every member list %s later", victim.name, follower.name, took)
}

// TestLeave: "pingora-node leave" on the leader: it hands leadership over,
// is taken out of raft, its process exits 0, and the others see it left.
func TestLeave(t *testing.T) {
	c, st := formedCluster(t)
	var leaver *procNode
	var rest []string
	for _, p := range c.nodes {
		if p.name == st.Raft.ID {
			leaver = p
		} else {
			rest = append(rest, p.name)
		}
	}
	code, out, errs := cli("leave", "--admin", "http://"+leaver.admin)
	if code != 0 || !strings.HasPrefix(out, leaver.name+": raft removed, gossip leaving; stopping\n") {
		t.Fatalf("leave: exit %d, %q %q", code, out, errs)
	}
	if err := leaver.wait(t, 30*time.Second); err != nil {
		t.Fatalf("%s exited with %v after leave", leaver.name, err)
	}
	waitUntil(t, 10*time.Second, "2 voters, a healthy leader, and "+leaver.name+" left everywhere", func() bool {
		for _, p := range c.running() {
			if s, _ := memberState(p, leaver.name); s != "left" {
				return false
			}
		}
		_, ok := c.healthyLeader(rest...)
		return ok
	})
}

// raftOf waits until p's /status has a raft section for which cond holds,
// and returns it.
func raftOf(t *testing.T, p *procNode, what string, cond func(st node.Status) bool) node.Status {
	t.Helper()
	var st node.Status
	waitUntil(t, 30*time.Second, p.name+": "+what, func() bool {
		var ok bool
		st, ok = p.status()
		return ok && st.Raft != nil && cond(st)
	})
	return st
}

// TestForeignDataDirRefused: two one-node clusters, p1 and q1, each with
// its cluster ID; p1 restarted on its data dir with q1 as its seed refuses
// to join, exits 1 saying why, and neither cluster changed. A node with an
// empty data dir joins q1's cluster and adopts its ID. Before issue 12, p1
// became a voter of q1's cluster and its raft log was overwritten.
func TestForeignDataDirRefused(t *testing.T) {
	c := &raftCluster{t: t}
	p, q := c.newNode("p1"), c.newNode("q1")
	c.nodes = []*procNode{p, q}
	c.startAll()
	leadsAlone := func(st node.Status) bool {
		return st.Raft.State == "Leader" && st.Raft.ClusterID != "" && len(st.Raft.Voters) == 1
	}
	pid := raftOf(t, p, "leads its own cluster", leadsAlone).Raft.ClusterID
	qid := raftOf(t, q, "leads its own cluster", leadsAlone).Raft.ClusterID
	if pid == qid {
		t.Fatalf("two clusters with one ID %s", pid)
	}
	if err := c.stop(p, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.join = []string{q.gossip}
	c.start(p)
	err := p.wait(t, 30*time.Second)
	log := p.log.String()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("p1 with another cluster's seed: exit %v", err)
	}
	for _, want := range []string{"refusing to join", "node q1", qid, pid, "empty data_dir"} {
		if !strings.Contains(log, want) {
			t.Fatalf("p1's message lacks %q:\n%s", want, tail(log, 3000))
		}
	}
	t.Logf("p1: %s", firstLine(log, "refusing to join"))
	if st := raftOf(t, q, "still alone", leadsAlone); st.Raft.ClusterID != qid {
		t.Fatalf("q1's cluster ID changed to %s", st.Raft.ClusterID)
	}
	if s, _ := memberState(q, "p1"); s == "alive" {
		t.Fatal("q1 took p1 in as a member")
	}
	p.join = nil
	c.start(p)
	if st := raftOf(t, p, "leads its own cluster again", leadsAlone); st.Raft.ClusterID != pid {
		t.Fatalf("p1's data dir now holds cluster %s, want %s", st.Raft.ClusterID, pid)
	}

	f := c.newNode("f1")
	f.join = []string{q.gossip}
	c.nodes = append(c.nodes, f)
	c.start(f)
	raftOf(t, q, "f1 a voter with q1's cluster ID", func(st node.Status) bool {
		fst, ok := f.status()
		return len(st.Raft.Voters) == 2 && ok && fst.Raft != nil && fst.Raft.ClusterID == qid
	})
}

func firstLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
