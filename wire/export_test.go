package wire

import (
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

// SetArrivalClock makes s stamp requests' arrival with now, for tests that
// need a deadline to have passed before the handler starts.
func SetArrivalClock(s *Server, now func() time.Time) { s.now = now }

// ShareStreamConn makes c carry streams on its unary connection, as a
// benchmark's point of comparison.
func ShareStreamConn(c *Client) { c.shareStreams = true }

// SetRetireLinger sets how long a retired connection stays open for the
// calls still on it, for the test's duration.
func SetRetireLinger(d time.Duration) func() {
	old := retireLinger
	retireLinger = d
	return func() { retireLinger = old }
}

// SetDrainIdleWait sets how long Drain waits for a pause in a connection's
// calls, for the test's duration.
func SetDrainIdleWait(d time.Duration) func() {
	old := drainIdleWait
	drainIdleWait = d
	return func() { drainIdleWait = old }
}

// SetClock makes s time its accept back-off with clk.
func SetClock(s *Server, clk clock.Clock) { s.clk = clk }
