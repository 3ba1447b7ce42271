package wire

import "time"

// SetArrivalClock makes s stamp requests' arrival with now, for tests that
// need a deadline to have passed before the handler starts.
func SetArrivalClock(s *Server, now func() time.Time) { s.now = now }

// ShareStreamConn makes c carry streams on its unary connection, as a
// benchmark's point of comparison.
func ShareStreamConn(c *Client) { c.shareStreams = true }
