package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestScriptsAnswerHelp: every chaos script prints its usage for -h (exit
// 0) and refuses an argument it does not take (exit 2), before it builds,
// creates or starts anything. "chaos/multihost.sh -h" started a whole run
// (a build, then network namespaces) and "chaos/run.sh -h" said only
// "unknown option -h".
func TestScriptsAnswerHelp(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	scripts, err := filepath.Glob("../*.sh")
	if err != nil {
		t.Fatal(err)
	}
	// The scripts run with a PATH of the few tools a usage needs: a script
	// that ignored its arguments would start a real run, and here finds no
	// go, ip, docker or curl to start one with.
	bin := t.TempDir()
	for _, tool := range []string{"bash", "sed", "grep", "basename", "dirname", "cat", "mktemp", "rm", "id"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s", tool)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	for _, s := range scripts {
		name := filepath.Base(s)
		if name == "netns.sh" { // sourced, not run
			continue
		}
		t.Run(name, func(t *testing.T) {
			out, errOut, code := runScript(t, s, "-h")
			if code != 0 || !strings.HasPrefix(out, "chaos/"+name+":") || strings.Contains(out+errOut, "== ") {
				t.Errorf("%s -h: exit %d, stdout %q, stderr %q; want the usage on stdout, exit 0, nothing run", name, code, head(out), head(errOut))
			}
			out, errOut, code = runScript(t, s, "--no-such-flag")
			if code != 2 || !strings.Contains(errOut, "--no-such-flag") || !strings.Contains(errOut, "chaos/"+name+":") || strings.Contains(out+errOut, "== ") {
				t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr %q; want the refusal and the usage on stderr, exit 2, nothing run", name, code, head(out), head(errOut))
			}
		})
	}
}

// runScript runs a script in its own process group, killed whole after
// 30 s.
func runScript(t *testing.T, script string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var xe *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &xe):
		code = xe.ExitCode()
	default:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func head(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
