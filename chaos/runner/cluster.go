package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// Cluster is one compose project: deploy/docker's compose file with
// chaos/compose.chaos.yml over it, under a project name of the run's own
// (chaosPID-SCENARIO), so that everything it starts carries that name and
// only that is removed.
type Cluster struct {
	Project string
	Files   []string // compose files, deploy/docker's first
	Env     []string // added to the compose commands' environment
	Token   string   // the admin token every node reads from admin.env
}

// Node is one node container as docker inspect shows it.
type Node struct {
	Container string // container name (project_node_N)
	Number    int    // compose's container number
	Name      string // node name: the container's host name
	IP        string // address on the project network
	PID       int    // host pid of the container's first process (0 when stopped)
	Running   bool
	Paused    bool
	StartedAt string
	Proxy     string // published 127.0.0.1:PORT of 8080, "" when stopped
	Admin     string // published 127.0.0.1:PORT of 9090
}

// run runs a command with a timeout and returns its combined output.
func run(ctx context.Context, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(out.String(), 5))
	}
	return out.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Compose runs docker-compose on the project.
func (c *Cluster) Compose(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	full := []string{"-p", c.Project}
	for _, f := range c.Files {
		full = append(full, "-f", f)
	}
	return run(ctx, timeout, c.Env, "docker-compose", append(full, args...)...)
}

// Docker runs the docker CLI.
func Docker(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	return run(ctx, timeout, nil, "docker", args...)
}

// Scale starts or stops node containers until n run. --no-recreate: a
// container compose re-created would be a new node (new name, empty data).
func (c *Cluster) Scale(ctx context.Context, n int) error {
	_, err := c.Compose(ctx, 5*time.Minute, "up", "-d", "--no-recreate", "--scale", fmt.Sprintf("node=%d", n))
	return err
}

// Down removes every container and the network of the project.
func (c *Cluster) Down(ctx context.Context) error {
	_, err := c.Compose(ctx, 3*time.Minute, "down", "--remove-orphans", "--volumes", "--timeout", "10")
	return err
}

// Nodes lists the project's node containers, stopped ones too, by number.
func (c *Cluster) Nodes(ctx context.Context) ([]Node, error) {
	out, err := Docker(ctx, 30*time.Second, "ps", "-a", "-q",
		"--filter", "label=com.docker.compose.project="+c.Project,
		"--filter", "label=com.docker.compose.service=node")
	if err != nil {
		return nil, err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return nil, nil
	}
	out, err = Docker(ctx, 30*time.Second, append([]string{"inspect"}, ids...)...)
	if err != nil {
		return nil, err
	}
	var raw []struct {
		Name   string
		Config struct {
			Hostname string
			Labels   map[string]string
		}
		State struct {
			Running, Paused bool
			Pid             int
			StartedAt       string
		}
		NetworkSettings struct {
			Ports    map[string][]struct{ HostIP, HostPort string }
			Networks map[string]struct{ IPAddress string }
		}
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return nil, fmt.Errorf("docker inspect: %w", err)
	}
	var nodes []Node
	for _, r := range raw {
		n := Node{Container: strings.TrimPrefix(r.Name, "/"), Name: r.Config.Hostname,
			Running: r.State.Running, Paused: r.State.Paused, PID: r.State.Pid, StartedAt: r.State.StartedAt}
		fmt.Sscan(r.Config.Labels["com.docker.compose.container-number"], &n.Number)
		for _, nw := range r.NetworkSettings.Networks {
			n.IP = nw.IPAddress
		}
		if p := r.NetworkSettings.Ports["8080/tcp"]; len(p) > 0 {
			n.Proxy = "127.0.0.1:" + p[0].HostPort
		}
		if p := r.NetworkSettings.Ports["9090/tcp"]; len(p) > 0 {
			n.Admin = "127.0.0.1:" + p[0].HostPort
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Number < nodes[j].Number })
	return nodes, nil
}

// NetExec runs a host binary (iptables, tc) in the network namespace of a
// node's container: the images are FROM scratch, so the tools come from
// the host (nsenter -n enters only the network namespace).
func NetExec(ctx context.Context, n Node, args ...string) error {
	if n.PID == 0 {
		return fmt.Errorf("%s: not running", n.Container)
	}
	_, err := run(ctx, 20*time.Second, nil, "nsenter", append([]string{"-t", fmt.Sprint(n.PID), "-n"}, args...)...)
	return err
}
