package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/config"
)

// TestCheckOpenFiles: a config whose caps can open more than the
// open-file limit gets one warning at start with both numbers and what to
// change; one within the limit gets none; a limit too low to run on is
// refused with the reason.
func TestCheckOpenFiles(t *testing.T) {
	dir := t.TempDir()
	nodeFile := filepath.Join(dir, "node.yaml")
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("node.yaml", "name: n1\nlisteners: [{name: http, addr: 127.0.0.1:8080}]\ncluster_config: cluster.yaml\n")
	write("cluster.yaml", "upstreams: [{name: web, peers: [{addr: 10.0.0.1:80}]}]\nroutes: [{upstream: web}]\n")
	cfg, err := config.LoadNode(nodeFile)
	if err != nil {
		t.Fatal(err)
	}
	check := func(limit uint64) ([]map[string]any, error) {
		var buf bytes.Buffer
		err := checkOpenFiles(slog.New(slog.NewJSONHandler(&buf, nil)), cfg, limit)
		var lines []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, m)
		}
		return lines, err
	}

	// the default max_conns (16384), an uncapped upstream, splice on:
	// 35584, over a container's 20000
	lines, err := check(20000)
	if err != nil || len(lines) != 1 {
		t.Fatalf("limit 20000: err %v, %d lines, want one warning", err, len(lines))
	}
	w := lines[0]
	if w["level"] != "WARN" || w["open_file_limit"] != float64(20000) || w["can_open"] != float64(35584) ||
		!strings.Contains(w["fix"].(string), "at least 35584") || !strings.Contains(w["fix"].(string), "downstream.max_conns to 8592") ||
		!strings.Contains(w["fix"].(string), "LimitNOFILE=") {
		t.Fatalf("warning %v", w)
	}
	if lines, err := check(65536); err != nil || len(lines) != 0 {
		t.Fatalf("limit 65536 (systemd's usual): err %v, lines %v, want none", err, lines)
	}

	// every upstream group capped: the caps count, not one per client
	write("cluster.yaml", "upstreams: [{name: web, max_conns: 100, peers: [{addr: 10.0.0.1:80}, {addr: 10.0.0.2:80}]}]\nroutes: [{upstream: web}]\n")
	if lines, _ := check(16384); len(lines) != 1 || lines[0]["can_open"] != float64(16384+200+2048+768) {
		t.Fatalf("capped upstreams: %v", lines)
	}
	if lines, _ := check(16384 + 200 + 2048 + 768); len(lines) != 0 {
		t.Fatalf("capped upstreams within the limit: %v", lines)
	}

	if _, err := check(100); err == nil || !strings.Contains(err.Error(), "open-file limit (RLIMIT_NOFILE) is 100") ||
		!strings.Contains(err.Error(), "at least 256") {
		t.Fatalf("limit 100: %v, want a refusal with the reason", err)
	}
}

// limited returns a command running the binary under an open-file limit
// of n, soft and hard: the Go runtime raises the soft limit to the hard
// one, so both are set.
func limited(n string, args ...string) *exec.Cmd {
	return exec.Command("sh", append([]string{"-c", `ulimit -Sn "$1" && ulimit -Hn "$1" && shift && exec "$@"`, "sh", n, binary}, args...)...)
}

// TestRunOpenFileLimit: "run" under a limit too low refuses to start with
// the reason; under one that the config's caps exceed, it warns once and
// serves.
func TestRunOpenFileLimit(t *testing.T) {
	d := newNodeDir(t, "127.0.0.1:1", "")
	refused := limited("200", "run", "--config", d.nodeFile)
	refused.WaitDelay = time.Second
	timer := time.AfterFunc(20*time.Second, func() { refused.Process.Kill() }) // a node that starts runs until stopped
	out, err := refused.CombinedOutput()
	timer.Stop()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "open-file limit (RLIMIT_NOFILE) is 200") {
		t.Fatalf("limit 200: %v\n%s", err, out)
	}

	cmd := limited("4096", "run", "--config", d.nodeFile)
	stderr := startLogged(t, cmd)
	waitFor(t, "the node to listen", func() bool { return strings.Contains(stderr.String(), `"msg":"listening"`) })
	log := stderr.String()
	if n := strings.Count(log, "the open-file limit is below"); n != 1 || !strings.Contains(log, `"open_file_limit":4096`) {
		t.Fatalf("%d warnings under limit 4096:\n%s", n, log)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
}
