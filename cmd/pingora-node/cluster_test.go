package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node"
)

// proc is one "pingora-node run" process of a test cluster.
type proc struct {
	name, nodeFile, admin, proxy string
	cmd                          *exec.Cmd
	log                          *logFile
}

// clusterOpts shape a test cluster's node files.
type clusterOpts struct {
	nodes    int
	profile  string // gossip_profile
	raft     bool   // data_dir and bootstrap_expect = nodes
	upstream string
	// together launches every node at once and returns without waiting
	// for any; the caller polls (default: one by one, each answering).
	together bool
}

// newProcCluster writes the node files of a cluster on loopback and
// starts every node, the first as the seed; it returns once each answers
// /status (ready or not).
func newProcCluster(t *testing.T, o clusterOpts) []*proc {
	t.Helper()
	dir, err := os.MkdirTemp("", "pc") // short: it holds Unix sockets
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(fmt.Sprintf(
		"upstreams:\n  - name: web\n    peers: [{addr: %s}]\nroutes:\n  - upstream: web\n", o.upstream)), 0o644)
	var procs []*proc
	seed := ""
	for i := range o.nodes {
		p := &proc{name: fmt.Sprintf("n%d", i+1), admin: freePort(t), proxy: freePort(t)}
		gossip := freePort(t)
		body := fmt.Sprintf("name: %s\nadmin_addr: %s\nlisteners:\n  - {name: http, addr: %s, h2c: true}\ncluster_config: cluster.yaml\n"+
			"gossip_addr: %s\ngossip_profile: %s\nupgrade_socket: %s.sock\ngrace_period: 5s\ncluster_addr: %s\n", p.name, p.admin, p.proxy, gossip, o.profile, p.name, freePort(t))
		if o.raft {
			body += fmt.Sprintf("data_dir: %s-data\nbootstrap_expect: %d\n", p.name, o.nodes)
		}
		if seed != "" {
			body += "join: [" + seed + "]\n"
		} else {
			seed = gossip
		}
		p.nodeFile = filepath.Join(dir, p.name+".yaml")
		os.WriteFile(p.nodeFile, []byte(body), 0o644)
		if o.together {
			p.launch(t)
		} else {
			p.start(t)
		}
		procs = append(procs, p)
	}
	return procs
}

// start launches the process and waits until it answers /status.
func (p *proc) start(t *testing.T) {
	t.Helper()
	p.launch(t)
	waitFor(t, p.name+" answering /status", func() bool {
		if p.cmd.ProcessState != nil {
			t.Fatalf("%s exited: %v\n%s", p.name, p.cmd.ProcessState, p.log.String())
		}
		_, err := p.status()
		return err == nil
	})
}

// launch starts the process; it is killed (by its PID) when the test ends.
func (p *proc) launch(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(binary, "run", "--config", p.nodeFile)
	p.log = newLogFile(t)
	p.cmd.Stderr = p.log.f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, log, name := p.cmd, p.log, p.name
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, log.String())
		}
	})
}

// status reads the node's /status.
func (p *proc) status() (*node.Status, error) {
	resp, err := http.Get("http://" + p.admin + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st node.Status
	return &st, json.NewDecoder(resp.Body).Decode(&st)
}

// stop sends SIGTERM and waits for the exit; it fails the test unless the
// exit code is 0.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := waitExit(t, p.cmd); err != nil {
		t.Fatalf("%s: exit after SIGTERM: %v", p.name, err)
	}
}

// cli runs a pingora-node command in this process.
func cli(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// checkLog fails the test for a log line that is not JSON, has a doubled
// package prefix or carries the same key twice, or is an ERROR logged at
// or after since (issue 12: a normal stop logs no ERROR).
func checkLog(t *testing.T, name, log string, since time.Time) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		var rec map[string]any
		switch {
		case json.Unmarshal([]byte(l), &rec) != nil:
			t.Errorf("%s: not a JSON line: %s", name, l)
		case rec["level"] == "ERROR" && !logTime(rec).Before(since):
			t.Errorf("%s: ERROR line: %s", name, l)
		case strings.Contains(l, "membership: membership") || strings.Contains(l, "consensus: consensus"):
			t.Errorf("%s: doubled prefix: %s", name, l)
		case strings.Count(l, `"node":`) > 1:
			t.Errorf("%s: key \"node\" twice: %s", name, l)
		}
	}
}

func logTime(rec map[string]any) time.Time {
	s, _ := rec["time"].(string)
	at, _ := time.Parse(time.RFC3339Nano, s)
	return at
}
