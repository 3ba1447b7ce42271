package membership

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLogBridgeLevels: memberlist's lines keep their level, except errors
// caused by this node's own shutdown (debug) and by an unreachable peer
// (warning), so a normal stop logs no ERROR (issue 12).
func TestLogBridgeLevels(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"[INFO] memberlist: Suspect n2 has failed, no acks received", `"level":"INFO"`},
		{"[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes failed", `"level":"WARN"`},
		{"[ERR] memberlist: Failed to send ack: write udp 127.0.0.1:7946->127.0.0.1:7956: use of closed network connection from=127.0.0.1:7956", ""},
		{"[ERR] memberlist: Push/Pull with n2 failed: dial tcp 127.0.0.1:7956: connect: connection refused", `"level":"WARN"`},
		{"[ERR] memberlist: Failed to receive: EOF", `"level":"WARN"`},
		{"[ERR] memberlist: Failed to decode ping request: bad", `"level":"ERROR"`},
	} {
		var buf bytes.Buffer
		newLogBridge(slog.New(slog.NewJSONHandler(&buf, nil))).Println(tc.line)
		got := buf.String()
		if tc.want == "" && got != "" || tc.want != "" && (!strings.Contains(got, tc.want) || strings.Contains(got, "[ERR]")) {
			t.Errorf("%q logged %q, want %s", tc.line, got, tc.want)
		}
	}
}
