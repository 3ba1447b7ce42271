package ratelimit

import (
	"testing"
	"time"
)

// An idle limiter's sync loop stops its ticker (an idle node must not wake
// 20 times a second for nothing), starts it again when a key arrives, keeps
// ticking while anything is held, and stops again once the sweep dropped it.
func TestSyncLoopQuietWhenIdle(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule Rule
		held func(l *Limiter) int
	}{
		{"global", globalRule(1000), func(l *Limiter) int {
			c := l.rules.Load().list[0].c
			return c.entries.len() + c.owned.len()
		}},
		{"local bucket", Rule{Name: "b", Key: "header:x-api-key", Limit: 10, Period: time.Second, Algorithm: TokenBucket},
			func(l *Limiter) int { return l.rules.Load().list[0].c.buckets.len() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, clk := newTestLimiter(t, tc.rule)
			if err := l.Start(); err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			waitFor(t, 10*time.Second, "the loop armed its ticker", func() bool { return clk.Waiters() == 1 })
			clk.Advance(DefaultSyncInterval) // a round that finds nothing
			waitFor(t, 10*time.Second, "the loop stopped its ticker", func() bool { return clk.Waiters() == 0 && l.quiet.Load() })

			r := req("1.1.1.1")
			r.Header.Set("x-api-key", "k")
			if d := l.Decide(r, 0, 0); !d.Allow {
				t.Fatalf("first request refused: %+v", d)
			}
			waitFor(t, 10*time.Second, "a key restarted the ticker", func() bool { return clk.Waiters() == 1 })
			if tc.rule.Scope == Global {
				clk.Advance(DefaultSyncInterval) // the report: this node owns the key
				waitFor(t, 10*time.Second, "the key was reported", func() bool { return l.rules.Load().list[0].c.owned.len() == 1 })
			}
			if l.quiet.Load() || clk.Waiters() != 1 {
				t.Fatalf("quiet=%v waiters=%d while a key is held", l.quiet.Load(), clk.Waiters())
			}
			// Well past the keep time: the next round sweeps the key,
			// and the one after that finds nothing.
			clk.Advance(time.Minute)
			waitFor(t, 10*time.Second, "the sweep dropped the key and the loop went quiet", func() bool {
				return tc.held(l) == 0 && clk.Waiters() == 0 && l.quiet.Load()
			})
		})
	}
}

// Reports queued while the loop stops are not lost: quiet is set before the
// loop looks again, so a key made in between either is seen or restarts it.
func TestSyncLoopUnquietRace(t *testing.T) {
	l, _ := newTestLimiter(t, globalRule(1000))
	l.quiet.Store(true)
	r := req("1.1.1.1")
	r.Header.Set("x-api-key", "k")
	l.Decide(r, 0, 0)
	if l.quiet.Load() {
		t.Fatal("a queued report left the loop quiet")
	}
	select {
	case <-l.kick:
	default:
		t.Fatal("a queued report did not kick the quiet loop")
	}
}
