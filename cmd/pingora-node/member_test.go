package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/membership"
)

// kill ends the process by its PID, if it still runs, and reaps it.
func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// gossipAddr is the node's advertised gossip address, from /status.
// The admin API answers before gossip starts (gossip starts last, issue
// 12), so it waits for the address.
func (p *proc) gossipAddr(t *testing.T) string {
	t.Helper()
	var addr string
	waitFor(t, p.name+"'s gossip address in /status", func() bool {
		st, err := p.status()
		if err == nil && st.Gossip != nil {
			addr = st.Gossip.Addr
		}
		return addr != ""
	})
	return addr
}

// members returns "name=state@addr" for each member p lists.
func (p *proc) members(t *testing.T) string {
	t.Helper()
	st, err := p.status()
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	var out []string
	for _, m := range st.Members {
		out = append(out, fmt.Sprintf("%s=%s@%s", m.Name, m.State, m.Addr))
	}
	return strings.Join(out, " ")
}

// extraNode writes the node file of one more node beside the cluster's
// (the same cluster.yaml), named name, with extra lines, and returns it
// unstarted. file names the node file, so two nodes may share a name.
func extraNode(t *testing.T, cluster []*proc, name, file, extra string) *proc {
	t.Helper()
	dir := filepath.Dir(cluster[0].nodeFile)
	p := &proc{name: name, admin: freePort(t), proxy: freePort(t), nodeFile: filepath.Join(dir, file+".yaml")}
	body := fmt.Sprintf("name: %s\nadmin_addr: %s\nlisteners:\n  - {name: http, addr: %s}\ncluster_config: cluster.yaml\n"+
		"gossip_addr: %s\nupgrade_socket: %s.sock\ngrace_period: 5s\ncluster_addr: %s\n%s", name, p.admin, p.proxy, freePort(t), file, freePort(t), extra)
	if err := os.WriteFile(p.nodeFile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFailedStartLeavesNoMember (issue 12): a node whose raft port is taken
// fails to start and exits non-zero, and never shows in the cluster: gossip
// starts last. Before, it joined first and stayed behind as a dead member.
func TestFailedStartLeavesNoMember(t *testing.T) {
	c := newProcCluster(t, clusterOpts{nodes: 1, profile: "fast", raft: true, upstream: "127.0.0.1:9"})
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	bad := extraNode(t, c, "n2", "n2", fmt.Sprintf("gossip_profile: fast\njoin: [%s]\ndata_dir: n2-data\nraft_addr: %s\n", c[0].gossipAddr(t), taken.Addr()))
	bad.launch(t)
	if err := waitExit(t, bad.cmd); err == nil {
		t.Fatal("a node whose raft port is taken exited 0")
	}
	if log := bad.log.String(); !strings.Contains(log, taken.Addr().String()) || strings.Contains(log, "membership: started") {
		t.Fatalf("want a raft bind error and no gossip; stderr:\n%s", log)
	}
	if got := c[0].members(t); strings.Contains(got, "n2") {
		t.Fatalf("the seed lists %s", got)
	}
}

// TestSecondNodeWithSameNameExits (issue 12): a second node started with
// the name of a live node exits 1 saying so; the first keeps its place.
// The same node restarted at once at its address (kill -9, then start) is
// let back in.
func TestSecondNodeWithSameNameExits(t *testing.T) {
	c := newProcCluster(t, clusterOpts{nodes: 2, profile: "fast", upstream: "127.0.0.1:9"})
	n2 := c[1]
	seed, addr := c[0].gossipAddr(t), n2.gossipAddr(t)
	alive := "n2=alive@" + addr
	waitFor(t, "n2 alive on the seed", func() bool { return strings.Contains(c[0].members(t), alive) })
	dup := extraNode(t, c, "n2", "dup", fmt.Sprintf("gossip_profile: fast\njoin: [%s]\n", seed))
	dup.launch(t)
	if err := waitExit(t, dup.cmd); err == nil {
		t.Fatal("the second n2 exited 0")
	}
	if log := dup.log.String(); !strings.Contains(log, `another node named \"n2\" is alive at `+addr) || !strings.Contains(log, "give this node a unique name") {
		t.Fatalf("stderr does not say why:\n%s", log)
	}
	if got := c[0].members(t); !strings.Contains(got, alive) {
		t.Fatalf("the seed lists %s, want %s", got, alive)
	}
	n2.kill()
	n2.start(t)
	waitFor(t, "the restarted n2 in the cluster", func() bool {
		return n2.members(t) == "n1=alive@"+seed+" "+alive
	})
	if n2.cmd.ProcessState != nil {
		t.Fatal("the restarted n2 exited")
	}
}

// TestJoinFailureShown (issue 12): a node whose seed never answers says so
// in /status and in "status", with the seeds, the failed attempts and the
// last error, while it keeps retrying.
func TestJoinFailureShown(t *testing.T) {
	c := newProcCluster(t, clusterOpts{nodes: 1, profile: "fast", upstream: "127.0.0.1:9"})
	dead := freePort(t)
	n := extraNode(t, c, "lonely", "lonely", fmt.Sprintf("gossip_profile: fast\njoin: [%s]\n", dead))
	n.start(t)
	var j membership.JoinStatus
	waitFor(t, "two failed attempts in /status", func() bool {
		st, err := n.status()
		if err == nil && st.Gossip != nil {
			j = st.Gossip.Join
		}
		return j.Failures >= 2
	})
	if j.Joined || len(j.Seeds) != 1 || j.Seeds[0] != dead || !strings.Contains(j.LastError, "failed to join "+dead) || j.NextAttempt.IsZero() {
		t.Fatalf("join status %+v", j)
	}
	code, out, _ := cli("status", "--admin", "http://"+n.admin)
	if code != 0 || !strings.Contains(out, "join      NOT JOINED: seeds "+dead) || !strings.Contains(out, "failed to join "+dead) {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
}

// TestDeadMemberReaped (issue 12): a member killed without leaving shows
// dead in /status, then is forgotten once reap_after has passed.
func TestDeadMemberReaped(t *testing.T) {
	c := newProcCluster(t, clusterOpts{nodes: 1, profile: "fast", upstream: "127.0.0.1:9"})
	join := fmt.Sprintf("gossip_profile: fast\njoin: [%s]\n", c[0].gossipAddr(t))
	watcher := extraNode(t, c, "n2", "n2", join+"reap_after: 3s\n")
	victim := extraNode(t, c, "n3", "n3", join)
	watcher.start(t)
	victim.start(t)
	waitFor(t, "n3 alive on n2", func() bool { return strings.Contains(watcher.members(t), "n3=alive") })
	victim.kill()
	seen := false
	waitFor(t, "n3 dead, then forgotten", func() bool {
		m := watcher.members(t)
		seen = seen || strings.Contains(m, "n3=dead")
		return seen && !strings.Contains(m, "n3")
	})
	if !strings.Contains(c[0].members(t), "n3=dead") {
		t.Fatalf("n1 (reap_after 24h) forgot n3 too: %s", c[0].members(t))
	}
}
