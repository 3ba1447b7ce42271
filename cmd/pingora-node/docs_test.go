package main

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/node/config"
)

// repoFile reads a file of the repository, relative to its root.
func repoFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestEnvDocumented (issue 12): every PINGORA_* variable the binary reads
// is in the README, by name or as the flag of the same name.
func TestEnvDocumented(t *testing.T) {
	envRef := regexp.MustCompile(`"(PINGORA_[A-Z_]+)"`)
	seen := map[string]bool{}
	for _, dir := range []string{"cmd/pingora-node", "node", "node/config", "membership", "consensus", "proxy"} {
		files, _ := filepath.Glob(filepath.Join("..", "..", dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, _ := os.ReadFile(f)
			for _, m := range envRef.FindAllStringSubmatch(string(b), -1) {
				seen[m[1]] = true
			}
		}
	}
	if len(seen) < 10 {
		t.Fatalf("found only %v: the scan is broken", seen)
	}
	readme := repoFile(t, "README.md")
	var names []string
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	// run's flags each have a variable of the same name, which the README
	// says once: --raft-addr documents PINGORA_RAFT_ADDR.
	sameName := strings.Contains(strings.Join(strings.Fields(readme), " "), "each has a variable of the same name")
	for _, name := range names {
		flagName := "`--" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "PINGORA_")), "_", "-") + "`"
		if !strings.Contains(readme, "`"+name+"`") && !(sameName && strings.Contains(readme, flagName)) {
			t.Errorf("README.md documents neither %s nor its flag %s", name, flagName)
		}
	}
}

// TestDeployFiles: deploy/node.yaml and deploy/cluster.yaml are valid, and
// what they (and the README's node file) write to lies in the systemd
// unit's writable paths.
func TestDeployFiles(t *testing.T) {
	n, err := config.LoadNode(filepath.Join("..", "..", "deploy", "node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.ParseCluster("deploy/cluster.yaml", []byte(repoFile(t, "deploy/cluster.yaml")))
	if err != nil || c.RoutesNothing() != "" {
		t.Fatalf("deploy/cluster.yaml: %v %q", err, c.RoutesNothing())
	}
	unit := repoFile(t, "deploy/systemd/pingora-node.service")
	value := func(key string) string {
		m := regexp.MustCompile(`(?m)^` + key + `=(.*)$`).FindStringSubmatch(unit)
		if m == nil {
			t.Fatalf("the unit has no %s=", key)
		}
		return strings.TrimSpace(m[1])
	}
	writable := strings.Fields(value("ReadWritePaths"))
	writable = append(writable, "/var/lib/"+value("StateDirectory"), "/run/"+value("RuntimeDirectory"))
	inWritable := func(what, path string) {
		for _, w := range writable {
			if path == w || strings.HasPrefix(path, w+"/") {
				return
			}
		}
		t.Errorf("%s %q is outside the unit's writable paths %v", what, path, writable)
	}
	inWritable("deploy/node.yaml data_dir", n.DataDir)
	inWritable("deploy/node.yaml upgrade_socket", n.UpgradeSocketPath())
	exec := value("ExecStart")
	if !strings.Contains(exec, "--config /etc/pingora/node.yaml") {
		t.Errorf("ExecStart %q does not run /etc/pingora/node.yaml, where deploy/systemd/README.md installs deploy/node.yaml", exec)
	}
	if m := regexp.MustCompile(`--pid-file (\S+)`).FindStringSubmatch(exec); m != nil {
		inWritable("ExecStart --pid-file", m[1])
	}
	if wd := value("WorkingDirectory"); n.DataDir != wd {
		t.Errorf("data_dir %q is not the unit's WorkingDirectory %q", n.DataDir, wd)
	}
	for _, doc := range []string{"README.md", "deploy/systemd/README.md"} {
		for _, m := range regexp.MustCompile(`data_dir: (/\S+)`).FindAllStringSubmatch(repoFile(t, doc), -1) {
			inWritable(doc+" data_dir", m[1])
		}
	}
	if !strings.Contains(repoFile(t, "deploy/systemd/README.md"), "deploy/node.yaml") {
		t.Error("deploy/systemd/README.md does not say to install deploy/node.yaml")
	}
}
