package systemd

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"
)

// unit reads pingora-node.service into section.key -> values (a key may
// repeat), skipping comments.
func unit(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("pingora-node.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("not a key=value line: %q", line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnitUpgrade: systemd follows the process that reports READY and
// MAINPID (the successor after an upgrade), reload is the graceful upgrade
// signalled to the main process only, the upgrade socket's directory
// outlives each process, and stop waits longer than the node's drain.
func TestUnitUpgrade(t *testing.T) {
	t.Parallel()
	u := unit(t)
	for _, tc := range []struct{ key, want string }{
		{"Service.Type", "notify"},
		{"Service.NotifyAccess", "all"},
		{"Service.ExecReload", "/bin/kill -USR2 $MAINPID"},
		{"Service.KillSignal", "SIGTERM"},
		{"Service.RuntimeDirectory", "pingora-node"},
	} {
		if got := strings.Join(u[tc.key], " | "); got != tc.want {
			t.Errorf("%s=%s, want %s", tc.key, got, tc.want)
		}
	}
	if start := strings.Join(u["Service.ExecStart"], ""); !strings.Contains(start, " run ") || !strings.Contains(start, "--pid-file /run/pingora-node/") {
		t.Errorf("ExecStart=%s: want run with a pid file in the RuntimeDirectory", start)
	}
	v := strings.Join(u["Service.TimeoutStopSec"], "")
	stop, err := time.ParseDuration(v)
	if err != nil { // a plain number is seconds
		stop, err = time.ParseDuration(v + "s")
	}
	if err != nil || stop <= 30*time.Second {
		t.Errorf("TimeoutStopSec=%v: want more than the node's default grace_period, 30s", u["Service.TimeoutStopSec"])
	}
}
