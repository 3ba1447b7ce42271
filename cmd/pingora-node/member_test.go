package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kill ends the process by its PID, if it still runs, and reaps it.
func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// gossipAddr is the node's advertised gossip address, from /status.
func (p *proc) gossipAddr(t *testing.T) string {
	t.Helper()
	st, err := p.status()
	if err != nil || st.Gossip == nil || st.Gossip.Addr == "" {
		t.Fatalf("%s: no gossip address in /status: %v", p.name, err)
	}
	return st.Gossip.Addr
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
		"gossip_addr: %s\nupgrade_socket: %s.sock\ngrace_period: 5s\n%s", name, p.admin, p.proxy, freePort(t), file, extra)
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
