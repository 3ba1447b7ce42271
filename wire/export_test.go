package wire

import "time"

// SetArrivalClock makes s stamp requests' arrival with now, for tests that
// need a deadline to have passed before the handler starts.
func SetArrivalClock(s *Server, now func() time.Time) { s.now = now }
