package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
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
		{"own transport shut down", func(l hclog.Logger) {
			l.Error("failed to decode incoming command", "error", errors.New("transport shutdown"))
		}, "", "", [2]string{}},
		{"named and with", func(l hclog.Logger) { l.Named("net").With("k", "v").Warn("slow") }, "WARN", "slow", [2]string{"k", "v"}},
		{"reserved key renamed, value as hclog prints it", func(l hclog.Logger) { l.Info("entering candidate state", "node", struct{ A, B int }{1, 2}) }, "INFO", "entering candidate state", [2]string{"raft_node", "{1 2}"}},
		{"a new leader's autopilot before its first state", func(l hclog.Logger) {
			l.Error("Failed to reconcile current state with the desired state", "error", errors.New("cannot reconcile Raft server voting rights without a valid autopilot state"))
		}, "", "", [2]string{}},
		{"autopilot's loop cancelled", func(l hclog.Logger) { l.Error("Error when computing next state", "error", context.Canceled) }, "", "", [2]string{}},
		{"standard logger", func(l hclog.Logger) { l.StandardLogger(nil).Print("[WARN] lost") }, "WARN", "lost", [2]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.log(newHCLogger(slog.New(slog.NewJSONHandler(&buf, nil)), "raft"))
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
