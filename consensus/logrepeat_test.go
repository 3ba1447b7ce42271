package consensus

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

func TestComplaintKey(t *testing.T) {
	rec := func(msg string, attrs ...any) slog.Record {
		r := slog.NewRecord(time.Time{}, slog.LevelWarn, msg, 0)
		r.Add(attrs...)
		return r
	}
	for _, tc := range []struct {
		r    slog.Record
		want string
	}{
		{rec("failed to heartbeat to", "peer", "127.0.0.1:36255", "backoff time", "150ms"), "failed to heartbeat to 127.0.0.1:36255"},
		{rec("failed to appendEntries to", "logger", "raft", "peer", "{Voter n2 127.0.0.1:33773}"), "failed to appendEntries to {Voter n2 127.0.0.1:33773}"},
		{rec("failed to make requestVote RPC", "logger", "raft", "target", "{Voter n3 10.77.7.3:7947}", "term", 4),
			"failed to make requestVote RPC {Voter n3 10.77.7.3:7947}"},
		{rec("Election timeout reached, restarting election", "logger", "raft"), "Election timeout reached, restarting election "},
		{rec("entering leader state", "leader", "Node at 127.0.0.1:1 [Leader]"), ""},
	} {
		if got := complaintKey(tc.r); got != tc.want {
			t.Errorf("complaintKey(%v) = %q, want %q", tc.r.Message, got, tc.want)
		}
	}
}

// TestQuietRepeats: a run of failed heartbeats to one peer logs its first
// line, then one per repeatEvery with the number dropped; other peers and
// other lines pass.
func TestQuietRepeats(t *testing.T) {
	var buf bytes.Buffer
	clk := clock.NewFake(time.Unix(0, 0))
	l := quietRepeats(slog.New(slog.NewTextHandler(&buf, nil)), clk).With("node", "n1")
	hb := func(peer string) {
		l.Warn("failed to heartbeat to", "logger", "raft", "peer", peer, "backoff time", "500ms")
	}
	for range 100 {
		hb("10.0.0.2:7947")
		clk.Advance(500 * time.Millisecond) // raft's backoff with default timings: ~100 a minute
	}
	hb("10.0.0.3:7947")
	l.Info("something else")
	l.Info("something else")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var n2 []string
	for _, line := range lines {
		if strings.Contains(line, "10.0.0.2") {
			n2 = append(n2, line)
		}
	}
	if len(n2) != 2 || strings.Contains(n2[0], "suppressed") || !strings.Contains(n2[1], "suppressed=59") {
		t.Fatalf("100 heartbeats over 50 s logged as:\n%s", strings.Join(n2, "\n"))
	}
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 2 for 10.0.0.2, 1 for 10.0.0.3 and 2 others:\n%s", len(lines), buf.String())
	}
}

// TestQuietElections: a candidate cut off from its cluster (its link down
// for a minute) logged every failed vote request, 78 lines, and every
// restarted election, 28 (and at info 38 candidacies and 38 failed
// pre-votes): now the first of each, per peer, then one per
// repeatEvery with the number dropped.
func TestQuietElections(t *testing.T) {
	var buf bytes.Buffer
	clk := clock.NewFake(time.Unix(0, 0))
	l := quietRepeats(slog.New(slog.NewTextHandler(&buf, nil)), clk)
	for range 30 { // an election every 2 s for a minute, two peers asked each time
		l.Warn("Election timeout reached, restarting election", "logger", "raft")
		l.Info("entering candidate state", "logger", "raft", "raft_node", "Node at 10.0.0.2:7947 [Candidate]", "term", 9)
		l.Info("pre-vote campaign failed, waiting for election timeout", "logger", "raft", "term", 9, "tally", 1, "refused", 2)
		for _, p := range []string{"{Voter n1 10.0.0.1:7947}", "{Voter n3 10.0.0.3:7947}"} {
			l.Warn("failed to make requestVote RPC", "logger", "raft", "target", p, "error", "connect: network is unreachable", "term", 9)
		}
		clk.Advance(2 * time.Second)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	count := func(sub string) int {
		n := 0
		for _, line := range lines {
			if strings.Contains(line, sub) {
				n++
			}
		}
		return n
	}
	for _, msg := range []string{"Election timeout reached", "entering candidate state", "pre-vote campaign failed"} {
		if n := count(msg); n != 2 {
			t.Errorf("%d %q lines in a minute, want 2:\n%s", n, msg, buf.String())
		}
	}
	if n1, n3 := count("10.0.0.1:7947"), count("10.0.0.3:7947"); n1 != 2 || n3 != 2 || count("suppressed=14") != 5 {
		t.Errorf("vote requests logged %d and %d times (want 2 each, the second with suppressed=14, as each of the other three kinds):\n%s", n1, n3, buf.String())
	}
}
