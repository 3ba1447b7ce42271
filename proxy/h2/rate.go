package h2

import (
	"errors"
	"time"

	"golang.org/x/net/http2"
)

// Minimum data rates (Config.MinSendRate, MinRecvRate): a stream whose
// client takes its response, or sends its request body, slower than that
// is reset with ENHANCE_YOUR_CALM, so that a client trickling bytes
// (a window opened one byte at a time, a body sent one byte per idle
// timeout) cannot hold the stream, and what the proxy holds for it
// upstream, for as long as it likes.
//
// Only time spent waiting on the client counts: a response write waiting
// for flow-control window (reserve), a body Read waiting for DATA. A
// client that takes what it is sent at once never waits, whatever its
// pace, and neither does one whose upstream is slow. A stream may wait
// MinRateGrace plus 1/rate for every byte it moved so far (before its
// first wait too): it is cut when it waited longer. So the rate is an
// average over the stream, as Kestrel's MinResponseDataRate: a client
// that read a large body fast may pause its reading (a paused video)
// for as long as the bytes bought, and the idle timeouts still bound
// each pause. Nothing is read from the clock until a stream waits.

// ErrTooSlow is what a stream's Write or Read returns when its client
// fell under the minimum data rate; the stream was reset with
// ENHANCE_YOUR_CALM.
var ErrTooSlow = errors.New("h2: client under the minimum data rate")

// Directions of a slow client, as Config.OnSlowClient is told.
const (
	SlowSend = "send" // the client took the response too slowly
	SlowRecv = "recv" // the client sent the request body too slowly
)

// waitState is what a stream that waited on its client keeps (see
// Stream.wait). sendWaited is the response writer's, recvWaited the body
// reader's: each side owns its own field.
type waitState struct {
	wake       chan struct{}
	sendWaited time.Duration
	recvWaited time.Duration
}

// waitStateLocked returns st.wait, made on first use; c.mu is held.
func (st *Stream) waitStateLocked() *waitState {
	if st.wait == nil {
		st.wait = &waitState{wake: make(chan struct{}, 1)}
	}
	return st.wait
}

// NoMinRate exempts the stream from the minimum data rates: a gRPC
// stream or a tunnel moves bytes at its application's pace, not its
// network's. Call it before the first Read or Write.
func (st *Stream) NoMinRate() { st.noMinRate = true }

// rateBudget is how much longer a stream that moved n bytes and waited
// waited so far may wait at rate bytes a second (RateBudget). ok is false
// when no minimum applies.
func (st *Stream) rateBudget(rate int, n int64, waited time.Duration) (budget time.Duration, ok bool) {
	if rate <= 0 || st.noMinRate {
		return 0, false
	}
	return RateBudget(st.c.cfg.MinRateGrace, rate, n, waited), true
}

// RateBudget is the minimum data rates' rule, for HTTP/2 streams and the
// proxy's HTTP/1.1 connections alike: how much longer a client that moved
// n bytes and waited waited so far may wait at rate bytes a second: grace,
// plus 1/rate for every byte, less what it waited. rate must be positive.
func RateBudget(grace time.Duration, rate int, n int64, waited time.Duration) time.Duration {
	const maxCredit = 1 << 62
	credit := time.Duration(maxCredit)
	if secs := n / int64(rate); secs < int64(maxCredit/time.Second) {
		credit = time.Duration(secs)*time.Second + time.Duration(n%int64(rate))*time.Second/time.Duration(rate)
	}
	return grace + credit - waited
}

// waitClient waits for ch, for at most idle, and at most budget when
// limited: the wait on the client of a write (send) or a read. It
// returns the time waited, and whether the idle timeout or the budget
// ran out.
func (c *Conn) waitClient(ch <-chan struct{}, idle, budget time.Duration, limited bool) (waited time.Duration, idleOut, slow bool) {
	// A stream is cut when it waited more than its budget: the timer
	// fires a nanosecond after it.
	d, rateBound := idle, limited && budget < idle
	if rateBound {
		d = max(budget, 0) + time.Nanosecond
	}
	clk := c.cfg.Clock
	start := clk.Now()
	t := clk.NewTimer(d)
	select {
	case <-ch:
		t.Stop()
		return clk.Now().Sub(start), false, false
	case <-t.C():
		return clk.Now().Sub(start), !rateBound, rateBound
	}
}

// resetSlow resets the stream with ENHANCE_YOUR_CALM for a client under
// the minimum data rate in direction dir: a stream error of the client's
// making, as the flood guard's connection error is, and one a client
// must not retry as it would a REFUSED_STREAM. Reads and writes fail
// with ErrTooSlow, the context is canceled and the reset hook runs, so
// the work done upstream for the stream stops.
func (st *Stream) resetSlow(dir string) {
	c := st.c
	c.mu.Lock()
	failed := st.wfail != nil
	if !failed {
		c.removeLocked(st)
		c.noteResetLocked(st.id)
	}
	c.mu.Unlock()
	if failed {
		return
	}
	st.fail(ErrTooSlow, false)
	c.writeRST(st.id, http2.ErrCodeEnhanceYourCalm)
	if c.cfg.OnSlowClient != nil {
		c.cfg.OnSlowClient(dir)
	}
}
