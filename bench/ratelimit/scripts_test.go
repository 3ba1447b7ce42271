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

// TestBenchScriptsAnswerHelp: every bench script prints its usage for -h
// (exit 0) and refuses an argument it does not take (exit 2), before it
// builds or runs anything. "bench/ratelimit.sh -h" took -h for a list of
// scenarios: it built both binaries, ran none, and replaced the results
// table of bench/RATELIMIT.md with an empty one.
func TestBenchScriptsAnswerHelp(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir, err := filepath.Abs("..") // a script may cd before it reads "$0"
	if err != nil {
		t.Fatal(err)
	}
	scripts, err := filepath.Glob(filepath.Join(dir, "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) == 0 {
		t.Fatal("no bench/*.sh found")
	}
	// The scripts run with a PATH of the few tools a usage needs: a script
	// that ignored its arguments would start a real run, and here finds no
	// go, wrk or curl to start one with.
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
		t.Run(name, func(t *testing.T) {
			out, errOut, code := runScript(t, s, "-h")
			if code != 0 || out == "" || strings.Contains(out+errOut, "== ") {
				t.Errorf("%s -h: exit %d, stdout %q, stderr %q; want the usage on stdout, exit 0, nothing run", name, code, head(out), head(errOut))
			}
			out, errOut, code = runScript(t, s, "--no-such-flag")
			if code != 2 || !strings.Contains(errOut, "--no-such-flag") || strings.Contains(out+errOut, "== ") {
				t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr %q; want the refusal on stderr, exit 2, nothing run", name, code, head(out), head(errOut))
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
