package membership

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logtest"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
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
		// a network that fails: a partition (a firewall's DROP makes sendto
		// fail with EPERM), a route gone
		{"[ERR] memberlist: Failed to send UDP ping: write udp [::]:7946->10.213.0.3:7946: sendto: operation not permitted", `"level":"WARN"`},
		{"[ERR] memberlist: Failed to send gossip to 10.0.0.3:7946: write udp [::]:7946->10.0.0.3:7946: sendto: network is unreachable", `"level":"WARN"`},
		{"[ERR] memberlist: Push/Pull with n3 failed: dial tcp 10.0.0.3:7946: connect: no route to host", `"level":"WARN"`},
		{"[ERR] memberlist: Failed to send UDP ping: write udp [::]:7946->10.0.0.3:7946: sendto: host is unreachable", `"level":"WARN"`},
		{"[ERR] memberlist: Failed to decode ping request: bad", `"level":"ERROR"`},
		// what a sender sent: a warning, whoever can reach the port can cause it
		{`[ERR] memberlist: discarding packet with unacceptable label "": from=127.0.0.1:40000`, `"level":"WARN"`},
		{"[ERR] memberlist: Failed to decode ping request: bad from=127.0.0.1:40000", `"level":"WARN"`},
	} {
		var buf bytes.Buffer
		newLogBridge(slog.New(slog.NewJSONHandler(&buf, nil)), nil).Println(tc.line)
		got := buf.String()
		if tc.want == "" && got != "" || tc.want != "" && (!strings.Contains(got, tc.want) || strings.Contains(got, "[ERR]")) {
			t.Errorf("%q logged %q, want %s", tc.line, got, tc.want)
		}
	}
}

func TestSenderNoiseKind(t *testing.T) {
	for _, tc := range []struct{ msg, kind string }{
		{`memberlist: discarding packet with unacceptable label "x:y": from=1.2.3.4:5`, "memberlist: discarding packet with unacceptable label"},
		{"memberlist: Failed to decode ping request: msgpack decode error from=1.2.3.4:5", "memberlist: Failed to decode ping request"},
		{"memberlist: msg type (77) not supported from=1.2.3.4:5", "memberlist: msg type"},
		{"memberlist: UDP packet too short (0 bytes) from=1.2.3.4:5", "memberlist: UDP packet too short"},
		{"memberlist: Got ping for unexpected node n2 from=1.2.3.4:5", "memberlist: Got ping for unexpected node n"},
	} {
		if kind, ok := senderNoise(tc.msg); !ok || kind != tc.kind {
			t.Errorf("senderNoise(%q) = %q, %v; want %q", tc.msg, kind, ok, tc.kind)
		}
	}
	// Lines about what a sender claimed, which name no sender.
	for _, tc := range []struct{ msg, kind string }{
		{"memberlist: Conflicting address for n3. Mine: 10.0.0.3:7946 Theirs: 10.0.0.9:7950 Old state: 0", "memberlist: Conflicting address for"},
		{"memberlist: Refuting a suspect message (from: x1)", "memberlist: Refuting a suspect message"},
		{"memberlist: Refuting a dead message (from: x1)", "memberlist: Refuting a dead message"},
		{"memberlist: Rejected IP update from n3 to 10.0.0.3 for node 10.0.0.9: not allowed", "memberlist: Rejected IP update"},
	} {
		if kind, ok := senderNoise(tc.msg); !ok || kind != tc.kind {
			t.Errorf("senderNoise(%q) = %q, %v; want %q", tc.msg, kind, ok, tc.kind)
		}
	}
	if _, ok := senderNoise("memberlist: Failed to send gossip to 10.0.0.2:7946: boom"); ok {
		t.Error("a line without from= counted as a sender's")
	}
}

// TestLogBridgeJunkFlood: 10,000 junk packets from as many senders (a
// bad label on each) log the first few lines as warnings, then one
// summary with the count, not 10,000 errors.
func TestLogBridgeJunkFlood(t *testing.T) {
	var buf logtest.Buffer
	fc := clock.NewFake(time.Unix(0, 0))
	bridge := newLogBridge(slog.New(slog.NewTextHandler(&buf, nil)), logthrottle.New(fc, 0, 0))
	for i := range 10_000 {
		bridge.Printf("[ERR] memberlist: discarding packet with unacceptable label %q: from=10.0.%d.%d:%d", fmt.Sprint(i), i/256%256, i%256, 1024+i)
	}
	bridge.Printf("[ERR] memberlist: Failed to send gossip to 10.0.0.2:7946: boom") // our own failure
	fc.Advance(logthrottle.DefaultWindow)
	var lines []string
	waitFor(t, 5*time.Second, "the summary", func() bool {
		lines = strings.Split(strings.TrimSpace(buf.String()), "\n")
		return len(lines) == logthrottle.DefaultBurst+2
	})
	for _, l := range lines[:logthrottle.DefaultBurst] {
		if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "unacceptable label") {
			t.Fatalf("junk logged as %q", l)
		}
	}
	if l := lines[logthrottle.DefaultBurst]; !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "boom") {
		t.Fatalf("own failure logged as %q", l)
	}
	want := fmt.Sprintf("suppressed=%d", 10_000-logthrottle.DefaultBurst)
	if l := lines[len(lines)-1]; !strings.Contains(l, "level=WARN") || !strings.Contains(l, want) ||
		!strings.Contains(l, `like="memberlist: discarding packet with unacceptable label"`) {
		t.Fatalf("summary %q, want %s", l, want)
	}
}

// TestLogBridgeClaimFlood: 5,000 UDP alive messages claiming a member's
// name at as many addresses (no gossip_key: anyone who reaches the port
// can send them) logged 5,000 ERROR lines "Conflicting address for n3",
// unthrottled, as they name no sender (from=); they are warnings and
// throttled now, as other lines a sender can cause.
func TestLogBridgeClaimFlood(t *testing.T) {
	var buf logtest.Buffer
	fc := clock.NewFake(time.Unix(0, 0))
	bridge := newLogBridge(slog.New(slog.NewTextHandler(&buf, nil)), logthrottle.New(fc, 0, 0))
	for i := range 5_000 {
		bridge.Printf("[ERR] memberlist: Conflicting address for n3. Mine: 10.0.0.3:7946 Theirs: 10.0.%d.%d:%d Old state: 0", i/256%256, i%256, 7946+i%50)
	}
	fc.Advance(logthrottle.DefaultWindow)
	var lines []string
	waitFor(t, 5*time.Second, "the summary", func() bool {
		lines = strings.Split(strings.TrimSpace(buf.String()), "\n")
		return len(lines) == logthrottle.DefaultBurst+1
	})
	for _, l := range lines[:logthrottle.DefaultBurst] {
		if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "Conflicting address for n3") {
			t.Fatalf("claim logged as %q", l)
		}
	}
	if l := lines[len(lines)-1]; !strings.Contains(l, fmt.Sprintf("suppressed=%d", 5_000-logthrottle.DefaultBurst)) {
		t.Fatalf("summary %q", l)
	}
}
