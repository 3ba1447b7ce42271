package logthrottle

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/logtest"
)

// waitLines waits until out has want lines.
func waitLines(t *testing.T, out *logtest.Buffer, want int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := out.Lines()
		if len(lines) >= want {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lines, want %d:\n%s", len(lines), want, strings.Join(lines, "\n"))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFlood: 10,000 identical junk lines log the first Burst and, when
// the window ends, one summary with the count of the rest; another kind
// of line is not held back by them, and the next window lets lines through
// again.
func TestFlood(t *testing.T) {
	out := &logtest.Buffer{}
	l := slog.New(slog.NewTextHandler(out, nil))
	fc := clock.NewFake(time.Unix(0, 0))
	th := New(fc, 10, time.Minute)
	for i := range 10_000 {
		th.Log(l, slog.LevelWarn, "junk", "junk packet", "from", i)
		if i%100 == 0 {
			fc.Advance(time.Millisecond) // 10 s in all, inside the window
		}
	}
	th.Log(l, slog.LevelWarn, "other", "another kind")
	if lines := out.Lines(); len(lines) != 11 || !strings.Contains(lines[10], "another kind") {
		t.Fatalf("during the flood:\n%s", strings.Join(lines, "\n"))
	}
	fc.Advance(time.Minute)
	lines := waitLines(t, out, 12)
	if s := lines[11]; !strings.Contains(s, `msg="suppressed 9990 similar messages in the last 1m0s"`) ||
		!strings.Contains(s, "like=junk") || !strings.Contains(s, "suppressed=9990") || !strings.Contains(s, "level=WARN") {
		t.Fatalf("summary %q", s)
	}
	th.Log(l, slog.LevelWarn, "junk", "junk packet", "from", "again")
	if lines := waitLines(t, out, 13); len(lines) != 13 || !strings.Contains(lines[12], "from=again") {
		t.Fatalf("after the window:\n%s", strings.Join(lines, "\n"))
	}
}

// TestFlush: a stopping node logs the open windows' counts at once, once.
func TestFlush(t *testing.T) {
	out := &logtest.Buffer{}
	l := slog.New(slog.NewTextHandler(out, nil))
	fc := clock.NewFake(time.Unix(0, 0))
	th := New(fc, 1, time.Minute)
	for range 5 {
		th.Log(l, slog.LevelWarn, "junk", "junk")
	}
	th.Flush()
	fc.Advance(time.Hour) // the window's timer is stopped: no second summary
	th.Flush()
	lines := out.Lines()
	if len(lines) != 2 || !strings.Contains(lines[1], "suppressed=4") {
		t.Fatalf("lines:\n%s", strings.Join(lines, "\n"))
	}
	var nilT *Throttle
	nilT.Log(l, slog.LevelWarn, "junk", "unthrottled")
	nilT.Flush()
	if n := len(out.Lines()); n != 3 {
		t.Fatalf("a nil Throttle logged %d lines, want 1", n-2)
	}
}

// TestKindsBounded: lines of more kinds than maxKinds share one window.
func TestKindsBounded(t *testing.T) {
	out := &logtest.Buffer{}
	l := slog.New(slog.NewTextHandler(out, nil))
	th := New(clock.NewFake(time.Unix(0, 0)), 1, time.Minute)
	for i := range 1000 {
		th.Log(l, slog.LevelWarn, strings.Repeat("k", i), "line")
	}
	if n := len(out.Lines()); n != maxKinds+1 {
		t.Fatalf("%d lines, want %d", n, maxKinds+1)
	}
	th.Flush()
	if s := out.Lines()[maxKinds+1]; !strings.Contains(s, `like=(other)`) || !strings.Contains(s, "suppressed=935") {
		t.Fatalf("summary %q", s)
	}
}
