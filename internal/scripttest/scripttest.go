// Package scripttest runs the repository's shell scripts from tests: each
// in its own process group, killed whole at a deadline, with a PATH of
// only the tools a script's usage needs (a script that ignored its
// arguments would start a real run, and finds nothing to start one with).
// Test-only.
package scripttest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// UsageTools are what a script needs to print its usage or refuse an
// argument, and nothing it would build or load with.
var UsageTools = []string{"bash", "sed", "grep", "basename", "dirname", "cat", "mktemp", "rm", "id"}

// RestrictPath sets PATH, for the rest of the test, to a directory holding
// only tools (linked from the current PATH); it skips the test when one is
// missing.
func RestrictPath(t *testing.T, tools ...string) {
	t.Helper()
	bin := t.TempDir()
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s", tool)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
}

// Run runs script with bash and args in its own process group, killed
// whole after 30 s, and returns its output and exit code.
func Run(t *testing.T, script string, args ...string) (stdout, stderr string, code int) {
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

// Head is s cut to 200 bytes, for a failure message.
func Head(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
