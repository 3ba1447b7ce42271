package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/internal/scripttest"
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
	scripttest.RestrictPath(t, scripttest.UsageTools...)
	for _, s := range scripts {
		name := filepath.Base(s)
		if name == "netns.sh" { // sourced, not run
			continue
		}
		t.Run(name, func(t *testing.T) {
			out, errOut, code := scripttest.Run(t, s, "-h")
			if code != 0 || !strings.HasPrefix(out, "chaos/"+name+":") || strings.Contains(out+errOut, "== ") {
				t.Errorf("%s -h: exit %d, stdout %q, stderr %q; want the usage on stdout, exit 0, nothing run", name, code, scripttest.Head(out), scripttest.Head(errOut))
			}
			out, errOut, code = scripttest.Run(t, s, "--no-such-flag")
			if code != 2 || !strings.Contains(errOut, "--no-such-flag") || !strings.Contains(errOut, "chaos/"+name+":") || strings.Contains(out+errOut, "== ") {
				t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr %q; want the refusal and the usage on stderr, exit 2, nothing run", name, code, scripttest.Head(out), scripttest.Head(errOut))
			}
		})
	}
}
