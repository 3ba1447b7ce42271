package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/internal/scripttest"
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
	scripttest.RestrictPath(t, scripttest.UsageTools...)
	for _, s := range scripts {
		name := filepath.Base(s)
		t.Run(name, func(t *testing.T) {
			out, errOut, code := scripttest.Run(t, s, "-h")
			if code != 0 || out == "" || strings.Contains(out+errOut, "== ") {
				t.Errorf("%s -h: exit %d, stdout %q, stderr %q; want the usage on stdout, exit 0, nothing run", name, code, scripttest.Head(out), scripttest.Head(errOut))
			}
			out, errOut, code = scripttest.Run(t, s, "--no-such-flag")
			if code != 2 || !strings.Contains(errOut, "--no-such-flag") || strings.Contains(out+errOut, "== ") {
				t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr %q; want the refusal on stderr, exit 2, nothing run", name, code, scripttest.Head(out), scripttest.Head(errOut))
			}
		})
	}
}
