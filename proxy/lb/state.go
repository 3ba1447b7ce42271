package lb

import "sync/atomic"

// State holds the mutable counters of one peer. It outlives any Selector:
// the proxy keeps one per peer address across configuration reloads, and
// every Backend for that address points at it. All fields are safe for
// concurrent use.
//
// State stores "down" rather than "healthy", so that the zero State is
// healthy: a &State{} or a State embedded in another struct can never
// silently take a peer out of rotation.
type State struct {
	// InFlight counts requests currently sent to the peer. The proxy adds 1
	// before it forwards a request and subtracts 1 when the request ends;
	// least_conn and p2c read it.
	InFlight atomic.Int64

	down atomic.Bool

	// Pad to a 64-byte cache line: InFlight is written on every request,
	// and States allocated side by side would otherwise share a line and
	// slow each other down (false sharing).
	_ [64 - 16]byte
}

// NewState returns a healthy State with nothing in flight.
func NewState() *State { return &State{} }

// Healthy reports whether the peer may receive traffic.
func (s *State) Healthy() bool { return !s.down.Load() }

// SetHealthy marks the peer as able (true) or unable (false) to receive
// traffic. Selectors see the change on their next pick.
func (s *State) SetHealthy(ok bool) { s.down.Store(!ok) }
