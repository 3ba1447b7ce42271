// Package logthrottle limits log lines that anyone on the network can
// cause (junk packets on the gossip port, junk connections on the cluster
// port): a flood of them must not flood the log. Of each kind of line the
// first Burst per window are logged; the rest are counted, and when the
// window ends one summary line says how many were suppressed.
package logthrottle

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

// Defaults: enough lines to see what is going on and who sends it, then
// one summary a minute.
const (
	DefaultBurst  = 10
	DefaultWindow = time.Minute
)

// maxKinds bounds the kinds tracked at once; lines of further kinds share
// one. Callers pass kinds from a fixed set of messages, so it is a guard.
const maxKinds = 64

// overflowKind is the kind of lines beyond maxKinds.
const overflowKind = "(other)"

// Throttle limits lines by kind. Its methods may be called concurrently;
// a nil *Throttle logs every line.
type Throttle struct {
	clock  clock.Clock
	burst  int
	window time.Duration

	mu    sync.Mutex
	kinds map[string]*run
}

// run is one window of one kind of line.
type run struct {
	start      time.Time
	logged     int
	suppressed int
	level      slog.Level
	log        *slog.Logger  // of the first suppressed line: the summary goes there
	timer      clock.Stopper // ends the window once a line was suppressed
	done       bool          // the summary is logged or being logged
}

// New returns a Throttle letting burst lines of a kind through per window
// (DefaultBurst and DefaultWindow when 0), timed by clk.
func New(clk clock.Clock, burst int, window time.Duration) *Throttle {
	if burst <= 0 {
		burst = DefaultBurst
	}
	if window <= 0 {
		window = DefaultWindow
	}
	return &Throttle{clock: clk, burst: burst, window: window, kinds: map[string]*run{}}
}

// Log logs msg with args to l at level, unless burst lines of kind were
// logged already in this window: then it counts it, and the window's end
// logs "suppressed N similar messages in the last WINDOW" to l at the
// level of the first line suppressed, with the kind in "like".
func (t *Throttle) Log(l *slog.Logger, level slog.Level, kind, msg string, args ...any) {
	ctx := context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	if t != nil && !t.admit(l, level, kind) {
		return
	}
	l.Log(ctx, level, msg, args...)
}

// admit reports whether a line of kind is logged now.
func (t *Throttle) admit(l *slog.Logger, level slog.Level, kind string) bool {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.kinds[kind]
	if r == nil && len(t.kinds) >= maxKinds {
		t.expire(now)
		if len(t.kinds) >= maxKinds {
			kind = overflowKind
			r = t.kinds[kind]
		}
	}
	if r != nil && r.timer == nil && now.Sub(r.start) >= t.window {
		r = nil // an old window with nothing suppressed: start afresh
	}
	if r == nil {
		r = &run{start: now}
		t.kinds[kind] = r
	}
	if r.logged < t.burst {
		r.logged++
		return true
	}
	if r.suppressed == 0 {
		r.level, r.log = level, l
		// A summary at the window's end, not with the next line: a
		// flood that stops must still be counted.
		r.timer = t.clock.AfterFunc(r.start.Add(t.window).Sub(now), func() { t.end(kind, r) })
	}
	r.suppressed++
	return false
}

// expire forgets windows that ended with nothing suppressed. t.mu is held.
func (t *Throttle) expire(now time.Time) {
	for k, r := range t.kinds {
		if r.timer == nil && now.Sub(r.start) >= t.window {
			delete(t.kinds, k)
		}
	}
}

// end ends r's window: it logs the summary and forgets the window, so the
// next line of its kind opens a new one.
func (t *Throttle) end(kind string, r *run) {
	t.mu.Lock()
	if r.done {
		t.mu.Unlock()
		return // Flush got there first
	}
	r.done = true
	if t.kinds[kind] == r {
		delete(t.kinds, kind)
	}
	t.mu.Unlock()
	t.summary(kind, r)
}

func (t *Throttle) summary(kind string, r *run) {
	r.log.Log(context.Background(), r.level, fmt.Sprintf("suppressed %d similar messages in the last %s", r.suppressed, t.window),
		"like", kind, "suppressed", r.suppressed)
}

// Flush logs the summaries of the windows still open at once, and forgets
// every window: for a node that stops, so that no count is lost.
func (t *Throttle) Flush() {
	if t == nil {
		return
	}
	t.mu.Lock()
	var ended []string
	var runs []*run
	for k, r := range t.kinds {
		if r.timer != nil && !r.done {
			r.done = true
			r.timer.Stop()
			ended, runs = append(ended, k), append(runs, r)
		}
	}
	clear(t.kinds)
	t.mu.Unlock()
	for i, k := range ended {
		t.summary(k, runs[i])
	}
}
