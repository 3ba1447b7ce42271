package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logtest"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
)

// TestHCLogger: raft's records become one JSON line each with the message
// and key/value pairs as attributes; peer-unreachable errors are warnings
// and errors from this server's own shutdown are debug (issue 12).
func TestHCLogger(t *testing.T) {
	for _, tc := range []struct {
		name  string
		log   func(hclog.Logger)
		level string // "" when nothing is written at debug off
		msg   string
		attr  [2]string
	}{
		{"info with args", func(l hclog.Logger) { l.Info("entering leader state", "leader", "n1") }, "INFO", "entering leader state", [2]string{"leader", "n1"}},
		{"error stays error", func(l hclog.Logger) { l.Error("failed to take snapshot", "error", errors.New("disk full")) }, "ERROR", "failed to take snapshot", [2]string{"error", "disk full"}},
		{"heartbeat to a stopped peer", func(l hclog.Logger) {
			l.Error("failed to heartbeat to", "peer", "127.0.0.1:7947", "error", errors.New("EOF"))
		}, "WARN", "failed to heartbeat to", [2]string{"error", "EOF"}},
		{"appendEntries", func(l hclog.Logger) { l.Error("failed to appendEntries to", "error", errors.New("connection refused")) }, "WARN", "failed to appendEntries to", [2]string{"error", "connection refused"}},
		{"junk on the cluster port", func(l hclog.Logger) {
			l.Error("failed to decode incoming command", "error", errors.New("unknown rpc type 71"))
		}, "WARN", "failed to decode incoming command", [2]string{"error", "unknown rpc type 71"}},
		{"own transport shut down", func(l hclog.Logger) {
			l.Error("failed to decode incoming command", "error", errors.New("transport shutdown"))
		}, "", "", [2]string{}},
		{"named and with", func(l hclog.Logger) { l.Named("net").With("k", "v").Warn("slow") }, "WARN", "slow", [2]string{"k", "v"}},
		{"reserved key renamed, value as hclog prints it", func(l hclog.Logger) { l.Info("entering candidate state", "node", struct{ A, B int }{1, 2}) }, "INFO", "entering candidate state", [2]string{"raft_node", "{1 2}"}},
		{"a new leader's autopilot before its first state", func(l hclog.Logger) {
			l.Error("Failed to reconcile current state with the desired state", "error", errors.New("cannot reconcile Raft server voting rights without a valid autopilot state"))
		}, "", "", [2]string{}},
		{"autopilot's loop cancelled", func(l hclog.Logger) { l.Error("Error when computing next state", "error", context.Canceled) }, "", "", [2]string{}},
		{"hclog.Fmt value, as raft logs its servers", func(l hclog.Logger) {
			l.Info("updating configuration", "servers", hclog.Fmt("%+v", []struct{ A, B string }{{"Voter", "n1"}}))
		}, "INFO", "updating configuration", [2]string{"servers", "[{A:Voter B:n1}]"}},
		{"standard logger", func(l hclog.Logger) { l.StandardLogger(nil).Print("[WARN] lost") }, "WARN", "lost", [2]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.log(newHCLogger(slog.New(slog.NewJSONHandler(&buf, nil)), "raft", nil))
			if tc.level == "" {
				if buf.Len() != 0 {
					t.Fatalf("logged at info: %s", buf.String())
				}
				return
			}
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			var rec map[string]any
			if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil {
				t.Fatalf("want one JSON line, got %q", buf.String())
			}
			if rec["level"] != tc.level || rec["msg"] != tc.msg || !strings.HasPrefix(rec["logger"].(string), "raft") {
				t.Fatalf("record %v, want level %s msg %q", rec, tc.level, tc.msg)
			}
			if k := tc.attr[0]; k != "" && rec[k] != tc.attr[1] {
				t.Fatalf("attr %s = %v, want %q", k, rec[k], tc.attr[1])
			}
		})
	}
}

// TestHCLoggerJunkFlood: 10,000 junk connections on the cluster port
// (raft logs one "failed to decode incoming command" each) log the first
// few as warnings, then one summary with the count; raft's own errors
// still log, as errors.
func TestHCLoggerJunkFlood(t *testing.T) {
	var buf logtest.Buffer
	fc := clock.NewFake(time.Unix(0, 0))
	l := newHCLogger(slog.New(slog.NewTextHandler(&buf, nil)), "raft", logthrottle.New(fc, 0, 0))
	for i := range 10_000 {
		l.Error("failed to decode incoming command", "error", fmt.Errorf("unknown rpc type %d", i%256))
	}
	l.Error("failed to take snapshot", "error", errors.New("disk full"))
	fc.Advance(logthrottle.DefaultWindow)
	deadline := time.Now().Add(5 * time.Second)
	lines := buf.Lines()
	for len(lines) < logthrottle.DefaultBurst+2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // the summary is logged by the window's timer
		lines = buf.Lines()
	}
	if len(lines) != logthrottle.DefaultBurst+2 {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), logthrottle.DefaultBurst+2, strings.Join(lines, "\n"))
	}
	for _, s := range lines[:logthrottle.DefaultBurst] {
		if !strings.Contains(s, "level=WARN") || !strings.Contains(s, "failed to decode incoming command") {
			t.Fatalf("junk logged as %q", s)
		}
	}
	if s := lines[logthrottle.DefaultBurst]; !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "disk full") {
		t.Fatalf("own failure logged as %q", s)
	}
	if s := lines[len(lines)-1]; !strings.Contains(s, "level=WARN") || !strings.Contains(s, "suppressed=9990") ||
		!strings.Contains(s, `like="failed to decode incoming command"`) {
		t.Fatalf("summary %q", s)
	}
}
