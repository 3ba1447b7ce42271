package main

import (
	"fmt"
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

// readmeCode returns the README's code: the lines of its fenced blocks and
// its inline code spans, one string each.
func readmeCode(t *testing.T) []string {
	t.Helper()
	var code []string
	fenced := false
	for _, line := range strings.Split(repoFile(t, "README.md"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			code = append(code, line)
			continue
		}
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(line, -1) {
			code = append(code, m[1])
		}
	}
	return code
}

// TestREADMECommands: every "pingora-node COMMAND --flag" the README shows
// in code is a command that exists with that flag (a renamed flag or
// subcommand left the README stale once), and every command "pingora-node
// help" lists is shown in the README.
func TestREADMECommands(t *testing.T) {
	cmdRef := regexp.MustCompile(`(?:^|[^\w/.-]|\./|\./cmd/)pingora-node ([a-z][\w-]*)(?: ([a-z][\w-]*))?([^#\n]*)`)
	flagRef := regexp.MustCompile(`(?:^|[\s\[(])--([a-z][\w-]*)`)
	shown := map[string]bool{}
	usages := map[string]string{}
	usageOf := func(args ...string) (string, bool) {
		key := strings.Join(args, " ")
		if u, ok := usages[key]; ok {
			return u, u != ""
		}
		var out, errb strings.Builder
		code := run(append(args, "-h"), &out, &errb)
		if code != 0 {
			usages[key] = ""
			return "", false
		}
		usages[key] = out.String()
		return out.String(), true
	}
	n := 0
	for _, code := range readmeCode(t) {
		for _, m := range cmdRef.FindAllStringSubmatch(code, -1) {
			n++
			args := []string{m[1]}
			if sub := m[2]; sub != "" && (m[1] == "config" || m[1] == "cache") && !strings.Contains(sub, "|") {
				args = append(args, sub)
			}
			shown[m[1]] = true
			if m[1] == "help" {
				continue
			}
			u, ok := usageOf(args...)
			if !ok {
				t.Errorf("README: %q: pingora-node %s -h fails: no such command", strings.TrimSpace(code), strings.Join(args, " "))
				continue
			}
			rest := m[3]
			if len(args) == 1 {
				rest = m[2] + rest
			}
			for _, f := range flagRef.FindAllStringSubmatch(rest, -1) {
				if !strings.Contains(u, "\n  -"+f[1]+" ") && !strings.Contains(u, "\n  -"+f[1]+"\n") {
					t.Errorf("README: %q: pingora-node %s has no flag --%s", strings.TrimSpace(code), strings.Join(args, " "), f[1])
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("found only %d commands in the README: the scan is broken", n)
	}
	for _, m := range regexp.MustCompile(`(?m)^  pingora-node ([a-z][\w-]*)`).FindAllStringSubmatch(usage, -1) {
		if !shown[m[1]] {
			t.Errorf("pingora-node help lists %q, which the README never shows", m[1])
		}
	}
}

// TestREADMERunFlags: the README's table of run's settings names every
// flag and node-file field that config.Settings defines.
func TestREADMERunFlags(t *testing.T) {
	readme := repoFile(t, "README.md")
	for _, s := range config.Settings {
		if s.Flag != "" && !strings.Contains(readme, "| `--"+s.Flag+"`") && !strings.Contains(readme, ", `--"+s.Flag+"`") {
			t.Errorf("README's table of run's flags lacks --%s", s.Flag)
		}
		if !strings.Contains(readme, "`"+s.Key+"`") {
			t.Errorf("README's table of run's flags lacks the node-file field %s", s.Key)
		}
	}
}

// TestREADMEConfigBlocks: every YAML block of the README is a node file or
// a cluster config that validates as shown (the cluster config's "every
// key" block once set queue_timeout without max_conns, which is refused).
// A rate_limits fragment is checked inside a document with the route it
// names.
func TestREADMEConfigBlocks(t *testing.T) {
	blocks := strings.Split(repoFile(t, "README.md"), "```yaml\n")[1:]
	if len(blocks) < 3 {
		t.Fatalf("found %d YAML blocks: the scan is broken", len(blocks))
	}
	for i, b := range blocks {
		y := b[:strings.Index(b, "```")]
		name := fmt.Sprintf("README.md YAML block %d", i+1)
		switch {
		case strings.HasPrefix(y, "rate_limits:"):
			doc := "upstreams: [{name: api, peers: [{addr: 127.0.0.1:1}]}]\nroutes: [{upstream: api}]\n" + y
			if _, err := config.ParseCluster(name, []byte(doc)); err != nil {
				t.Errorf("%s (with an upstream and route named api): %v", name, err)
			}
		case strings.HasPrefix(y, "upstreams:"), strings.HasPrefix(y, "routes:"):
			if _, err := config.ParseCluster(name, []byte(y)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		default:
			if _, err := config.ParseNode(name, []byte(y)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

// TestMarkdownTables: every table in the README starts with a header and
// its |---| row; a blank line inside a table (which cut the admin API's
// in two, the second half shown as plain text) starts a "table" without one.
func TestMarkdownTables(t *testing.T) {
	delim := regexp.MustCompile(`^\|(\s*:?-{3,}:?\s*\|)+\s*$`)
	lines := strings.Split(repoFile(t, "README.md"), "\n")
	fenced := false
	for i, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "|") || (i > 0 && strings.HasPrefix(lines[i-1], "|")) {
			continue
		}
		if i+1 >= len(lines) || !delim.MatchString(lines[i+1]) {
			t.Errorf("README.md:%d: a table row with no table header above it: %.60s", i+1, line)
		}
	}
}

// TestREADMEFuzzTargets: the README's fuzz table has a row for every
// go test -fuzz target of the repository, in its package (it had missed
// five).
func TestREADMEFuzzTargets(t *testing.T) {
	readme := repoFile(t, "README.md")
	fuzzFunc := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)
	root := filepath.Join("..", "..")
	n := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, m := range fuzzFunc.FindAllStringSubmatch(string(b), -1) {
			n++
			row := "| `" + m[1] + "` | `" + filepath.ToSlash(rel) + "` |"
			if !strings.Contains(readme, row) {
				t.Errorf("README's fuzz table lacks the row %s...", row)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("found only %d fuzz targets: the scan is broken", n)
	}
}
