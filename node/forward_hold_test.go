package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/wire"
)

// fakeHold is a holdPolicy on a fake clock whose leader a test sets, and
// a driver that advances the clock whenever the hold waits.
type fakeHold struct {
	h      holdPolicy
	clk    *clock.Fake
	leader atomic.Pointer[string]
}

func newFakeHold(leader string) *fakeHold {
	f := &fakeHold{clk: clock.NewFake(time.Unix(1e9, 0))}
	f.setLeader(leader)
	f.h = holdPolicy{
		hold:   5 * time.Second,
		clock:  f.clk,
		leader: func() string { return *f.leader.Load() },
		jitter: func(d time.Duration) time.Duration { return d }, // no randomness in tests
		min:    50 * time.Millisecond,
		max:    time.Second,
		poll:   10 * time.Millisecond,
	}
	return f
}

func (f *fakeHold) setLeader(id string) { f.leader.Store(&id) }

// run holds attempt, advancing the fake clock by poll each time the hold
// waits (a timer and a ticker armed), and returns the outcome, the log
// lines and the fake time it took.
func (f *fakeHold) run(t *testing.T, first string, read bool, attempt attemptFunc) (holdResult, []string, time.Duration) {
	t.Helper()
	var mu sync.Mutex
	var logs []string
	log := func(msg string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprint(append([]any{msg}, args...)...))
	}
	start := f.clk.Now()
	done := make(chan holdResult, 1)
	go func() { done <- f.h.holdForLeader(context.Background(), first, read, attempt, log) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case r := <-done:
			mu.Lock()
			defer mu.Unlock()
			return r, logs, f.clk.Now().Sub(start)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the hold did not end")
		}
		if f.clk.Waiters() >= 2 {
			f.clk.Advance(f.h.poll)
		} else {
			runtime.Gosched()
		}
	}
}

// TestHoldRetriesNotLeader: an ex-leader's answer NotLeader (it proposed
// nothing) is sent again to the leader this node learns of next, and the
// client gets that leader's answer.
func TestHoldRetriesNotLeader(t *testing.T) {
	f := newFakeHold("n1")
	var calls []string
	attempt := func(_ context.Context, leader string) (adminAnswer, string, error) {
		calls = append(calls, leader)
		if leader == "n1" {
			f.setLeader("n2") // the election ends while we wait
			return storeAnswer(&consensus.NotLeaderError{LeaderID: "n2"}), leader, nil
		}
		return adminAnswer{Status: http.StatusOK}, leader, nil
	}
	r, logs, _ := f.run(t, "n1", false, attempt)
	if r.err != nil || r.a.Status != 200 || r.by != "n2" || strings.Join(calls, ",") != "n1,n2" {
		t.Fatalf("result %+v after calls %v; want 200 from n2 after n1 and n2", r, calls)
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "not the leader") {
		t.Fatalf("logs %q: want one retry logged with why", logs)
	}
}

// TestHoldWaitsForFirstLeader: with no leader known, nothing is sent
// until one is; the request goes to it.
func TestHoldWaitsForFirstLeader(t *testing.T) {
	f := newFakeHold("")
	elected := f.clk.Now().Add(300 * time.Millisecond)
	f.h.leader = func() string {
		if f.clk.Now().Before(elected) {
			return ""
		}
		return "n3"
	}
	var calls []string
	r, _, _ := f.run(t, "", false, func(_ context.Context, leader string) (adminAnswer, string, error) {
		calls = append(calls, leader)
		return adminAnswer{Status: http.StatusOK}, leader, nil
	})
	if r.err != nil || r.a.Status != 200 || strings.Join(calls, ",") != "n3" {
		t.Fatalf("result %+v after calls %v; want 200 from n3 alone", r, calls)
	}
}

// TestHoldGivesUp: with no leader for the whole hold, the request fails
// once the hold has passed, with every try in the answer.
func TestHoldGivesUp(t *testing.T) {
	f := newFakeHold("")
	r, logs, took := f.run(t, "", false, func(context.Context, string) (adminAnswer, string, error) {
		t.Fatal("called with no leader")
		return adminAnswer{}, "", nil
	})
	if !errors.Is(r.err, consensus.ErrNoLeader) || r.count() < 3 || len(r.tries) != 1 {
		t.Fatalf("result %+v: want no leader known after several tries", r)
	}
	if took < f.h.hold || took > f.h.hold+f.h.max {
		t.Fatalf("gave up after %v (fake time); want the hold, %v", took, f.h.hold)
	}
	if last := logs[len(logs)-1]; !strings.Contains(last, "giving up") || !strings.Contains(last, "(none) ×") {
		t.Fatalf("last log %q: want the give-up with the tries", last)
	}
}

// TestHoldRetriesOnlyWhatIsSafe: a call that never reached the leader is
// sent again; a write whose call failed after it was sent, a 409 (the
// If-Match of a write that may be the client's own retry) and a 503 for
// no quorum after a proposal are answered as they are; a read is sent
// again after any failure of its call.
func TestHoldRetriesOnlyWhatIsSafe(t *testing.T) {
	notSent := fmt.Errorf("wire: dial x: %w (%w)", wire.ErrPeerGone, wire.ErrNotSent)
	sentLost := fmt.Errorf("wire: x node.config.put: %w (EOF)", wire.ErrPeerGone)
	cases := []struct {
		name  string
		read  bool
		first outcomeOf
		calls int
	}{
		{"not sent", false, outcomeOf{err: notSent}, 2},
		{"sent, answer lost", false, outcomeOf{err: sentLost}, 1},
		{"sent, answer lost, a read", true, outcomeOf{err: sentLost}, 2},
		{"If-Match conflict", false, outcomeOf{a: storeAnswer(&consensus.ConflictError{Name: clusterDoc, Want: 1, Current: 2})}, 1},
		{"no quorum after the proposal", false, outcomeOf{a: storeAnswer(fmt.Errorf("%w: leadership lost", consensus.ErrNoQuorum))}, 1},
		{"no leader known at the leader", false, outcomeOf{a: storeAnswer(errNoLeaderKnown)}, 2},
		{"an older leader", false, outcomeOf{err: fmt.Errorf("x: %w", wire.ErrUnknownMethod)}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHold("n1")
			calls := 0
			r, _, _ := f.run(t, "n1", tc.read, func(context.Context, string) (adminAnswer, string, error) {
				if calls++; calls == 1 {
					return tc.first.a, "n1", tc.first.err
				}
				return adminAnswer{Status: http.StatusOK}, "n1", nil
			})
			if calls != tc.calls {
				t.Fatalf("%d calls, want %d (result %+v)", calls, tc.calls, r)
			}
			if tc.calls == 1 && (r.err != tc.first.err || r.a.Status != tc.first.a.Status) {
				t.Fatalf("result %+v; want the first outcome as it was", r)
			}
		})
	}
}

type outcomeOf struct {
	a   adminAnswer
	err error
}

// TestStoreAnswerNotLeader: the answer says NotLeader only when nothing
// was proposed.
func TestStoreAnswerNotLeader(t *testing.T) {
	for err, want := range map[error]bool{
		&consensus.NotLeaderError{LeaderID: "n2"}: true,
		errNoLeaderKnown: true,
		fmt.Errorf("%w: leadership lost", consensus.ErrNoQuorum):              false,
		fmt.Errorf("%w: %w", consensus.ErrNoQuorum, context.DeadlineExceeded): false,
		consensus.ErrClosed: false,
	} {
		if a := storeAnswer(err); a.NotLeader != want || a.Status != 503 {
			t.Errorf("storeAnswer(%v) = %+v; want 503 with NotLeader %v", err, a, want)
		}
	}
}
