package consensus

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

// repeatEvery is how often raft's complaint about one unreachable peer is
// logged: raft logs every failed heartbeat and append, ~100 lines a minute
// per dead server (issue 12), until autopilot removes it.
const repeatEvery = 30 * time.Second

// repeatedComplaints are the raft messages that repeat per failed RPC;
// their "peer" (or, for a vote, "target") attribute names the peer. A
// candidate cut off from the others asks each for its vote at every
// election, and restarts one every second or two: a node whose link was
// down for a minute logged 78 "failed to make requestVote RPC" and 28
// "Election timeout reached" lines, and at info 38 "entering candidate
// state" and 38 "pre-vote campaign failed" (status shows the candidate).
var repeatedComplaints = []string{"failed to heartbeat to", "failed to appendEntries to", "failed to make requestVote RPC",
	"Election timeout reached, restarting election", "entering candidate state", "pre-vote campaign failed"}

// quietRepeats returns l with raft's per-RPC complaints about a peer
// limited to the first, then one per repeatEvery carrying the number
// dropped in between ("suppressed").
func quietRepeats(l *slog.Logger, clk clock.Clock) *slog.Logger {
	return slog.New(&repeatHandler{next: l.Handler(), st: &repeatState{clock: clk, last: map[string]repeatRun{}}})
}

type repeatHandler struct {
	next slog.Handler
	st   *repeatState
}

type repeatState struct {
	clock clock.Clock
	mu    sync.Mutex
	last  map[string]repeatRun // by complaint and peer
}

type repeatRun struct {
	logged  time.Time
	dropped int
}

var _ slog.Handler = (*repeatHandler)(nil)

func (h *repeatHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *repeatHandler) Handle(ctx context.Context, r slog.Record) error {
	key := complaintKey(r)
	if key == "" {
		return h.next.Handle(ctx, r)
	}
	dropped, ok := h.st.admit(key)
	if !ok {
		return nil
	}
	if dropped > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", dropped))
	}
	return h.next.Handle(ctx, r)
}

func (h *repeatHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &repeatHandler{next: h.next.WithAttrs(as), st: h.st}
}

func (h *repeatHandler) WithGroup(name string) slog.Handler {
	return &repeatHandler{next: h.next.WithGroup(name), st: h.st}
}

// admit reports whether a complaint with key is logged now, and how many
// were dropped since the last one logged.
func (s *repeatState) admit(key string) (int, bool) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	run, seen := s.last[key]
	if seen && now.Sub(run.logged) < repeatEvery {
		run.dropped++
		s.last[key] = run
		return 0, false
	}
	if len(s.last) > 1024 { // peers come and go; forget them all now and then
		clear(s.last)
	}
	s.last[key] = repeatRun{logged: now}
	return run.dropped, true
}

// complaintKey returns the complaint and its peer from a raft record, or
// "" for any other record.
func complaintKey(r slog.Record) string {
	for _, c := range repeatedComplaints {
		if !strings.HasPrefix(r.Message, c) {
			continue
		}
		peer := ""
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "peer" || a.Key == "target" {
				peer = a.Value.String()
				return false
			}
			return true
		})
		return c + " " + peer
	}
	return ""
}
