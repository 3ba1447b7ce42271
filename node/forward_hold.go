package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/wire"
)

// An admin request that needs the leader, arriving during an election
// (the leader just lost leadership, was stopped or killed, or is starved
// of CPU), would fail at once: no leader is known yet, the node it goes
// to answers that it is no longer the leader, or the dead leader refuses
// the connection. As Consul's servers hold an RPC for rpc_hold_timeout,
// the node holds such a request for up to forwardHold, waiting for a
// leader with a jittered back-off, and sends it again, only where that
// cannot run it twice:
//
//   - no leader is known (nothing was sent);
//   - the node called answered adminAnswer.NotLeader: it proposed
//     nothing;
//   - the call never reached the leader (wire.ErrNotSent: the dial
//     failed, or the connection was found dead before the write; or the
//     leader is no longer in the member list).
//
// Everything else is answered as it is: an answer of the leader (200,
// 400, 409, a 503 for no quorum after a proposal, whose write may still
// commit), and a call that failed after it was sent (the leader may have
// run it; with If-Match a second write would answer 409 to a write that
// succeeded). A linearizable read is sent again after any failure of the
// call: it changes nothing.
const forwardHold = 5 * time.Second

// holdPolicy is how a node holds a request for a leader; tests replace
// its parts.
type holdPolicy struct {
	hold     time.Duration // no new attempt starts this long after the first
	clock    clock.Clock
	leader   func() string // the leader this node knows, "" for none
	jitter   func(d time.Duration) time.Duration
	min, max time.Duration // the back-off between attempts, before jitter
	poll     time.Duration // how often the leader is looked at while waiting
}

// defaultHold is the policy for node n.
func (n *Node) defaultHold() holdPolicy {
	return holdPolicy{
		hold:  forwardHold,
		clock: clock.Real{},
		leader: func() string {
			if st := n.Store(); st != nil {
				id, _ := st.Leader()
				return id
			}
			return ""
		},
		// Between half and all of d: nodes that lost the same leader do
		// not call the new one in step.
		jitter: func(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) },
		min:    50 * time.Millisecond,
		max:    time.Second,
		poll:   10 * time.Millisecond,
	}
}

// attemptFunc sends the request once to leader ("" when none is known)
// and returns the answer and who answered (this node's name when it was
// the leader and ran it itself), or the error of the call.
type attemptFunc func(ctx context.Context, leader string) (a adminAnswer, by string, err error)

// holdResult is the outcome of holdForLeader.
type holdResult struct {
	a     adminAnswer
	by    string // who answered; "" when nobody did
	err   error  // the last call's error, when no answer came
	tries []try  // in order, repeats of the same outcome counted in one
}

// try is one or more tries in a row with the same leader and outcome.
type try struct {
	leader, outcome string
	n               int
}

// summary lists tries, leaving out an outcome that is last (the answer
// says it already).
func summary(tries []try, last string) string {
	var b strings.Builder
	for i, t := range tries {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(orNone(t.leader))
		if t.n > 1 {
			fmt.Fprintf(&b, " ×%d", t.n)
		}
		if t.outcome != last {
			b.WriteString(": " + t.outcome)
		}
	}
	return b.String()
}

// count is how many tries were made.
func (r holdResult) count() int {
	n := 0
	for _, t := range r.tries {
		n += t.n
	}
	return n
}

// holdForLeader calls attempt with the leader first believed in (first,
// possibly "") and again, while retry allows it, with the leader known
// after a back-off, until forwardHold has passed since it started or ctx
// ends. read says the request changes nothing (any failure of the call
// may be retried).
func (h holdPolicy) holdForLeader(ctx context.Context, first string, read bool, attempt attemptFunc, log func(msg string, args ...any)) holdResult {
	start := h.clock.Now()
	leader := first
	var res holdResult
	for i := 0; ; i++ {
		res.a, res.by, res.err = adminAnswer{}, "", nil
		if leader == "" {
			res.err = errNoLeaderKnown
		} else {
			res.a, res.by, res.err = attempt(ctx, leader)
		}
		why := retryWhy(res, leader, read)
		if o, k := outcome(res), len(res.tries); k > 0 && res.tries[k-1].leader == leader && res.tries[k-1].outcome == o {
			res.tries[k-1].n++
		} else {
			res.tries = append(res.tries, try{leader: leader, outcome: o, n: 1})
		}
		if why == "" {
			return res
		}
		left := h.hold - h.clock.Now().Sub(start)
		if left <= 0 || ctx.Err() != nil {
			log("giving up on the leader", "held", h.clock.Now().Sub(start).Round(time.Millisecond).String(), "tries", summary(res.tries, ""))
			return res
		}
		wait := h.min << min(i, 16)
		if wait > h.max || wait <= 0 {
			wait = h.max
		}
		wait = min(h.jitter(wait), left)
		log("holding for a leader", "try", i+1, "leader", orNone(leader), "why", why, "wait", wait.Round(time.Millisecond).String())
		next, ok := h.awaitLeader(ctx, leader, wait)
		if !ok {
			log("giving up on the leader", "held", h.clock.Now().Sub(start).Round(time.Millisecond).String(), "tries", summary(res.tries, ""), "err", ctx.Err())
			return res
		}
		leader = next
	}
}

// retryWhy says why the outcome of a try may be retried, or "".
func retryWhy(r holdResult, leader string, read bool) string {
	switch {
	case leader == "":
		return "no leader known"
	case r.err == nil && r.a.NotLeader:
		return "not the leader"
	case r.err == nil:
		return ""
	case errors.Is(r.err, wire.ErrNotSent), errors.Is(r.err, errNoClusterAddr):
		return "not sent"
	case errors.Is(r.err, wire.ErrUnknownMethod):
		return "" // an older leader: it will not learn the call by waiting
	case read:
		return "call failed"
	}
	return ""
}

func outcome(r holdResult) string {
	if r.err != nil {
		return r.err.Error()
	}
	if r.a.Error != "" {
		return fmt.Sprintf("%d %s", r.a.Status, r.a.Error)
	}
	return fmt.Sprint(r.a.Status)
}

func orNone(id string) string {
	if id == "" {
		return "(none)"
	}
	return id
}

// awaitLeader waits up to wait for the leader to differ from prev (and
// be known), looking every poll, and returns the leader then; when wait
// passes first it returns the leader known at its end, the same or none.
// It reports false when ctx ended.
func (h holdPolicy) awaitLeader(ctx context.Context, prev string, wait time.Duration) (string, bool) {
	tm := h.clock.NewTimer(wait)
	defer tm.Stop()
	tk := h.clock.NewTicker(h.poll)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", false
		case <-tm.C():
			return h.leader(), true
		case <-tk.C():
			if id := h.leader(); id != "" && id != prev {
				return id, true
			}
		}
	}
}
