package membership

import (
	"time"
)

// State is a member's state as this node sees it.
type State string

const (
	Alive State = "alive"
	// Suspect is reserved for a member that missed probes (it would stay on
	// the ring). memberlist v0.7.0 does not expose suspicion (Node.State is
	// never filled), so members currently go from alive straight to dead.
	Suspect State = "suspect"
	Dead    State = "dead" // failed without leaving
	Left    State = "left" // left after announcing draining (see Cluster.Leave)
)

// Member is one node as this node sees it.
type Member struct {
	Name       string    `json:"name"`
	Addr       string    `json:"addr"` // gossip "ip:port"
	State      State     `json:"state"`
	Meta       Meta      `json:"meta"`
	LastChange time.Time `json:"last_change"`
	// metaRaw is the encoded Meta, to skip decoding when it did not change.
	metaRaw []byte
	// metaOK is false when Meta could not be decoded; such a member stays
	// off the ring.
	metaOK bool
}

// EventType says what happened to a member.
type EventType int

const (
	EventJoin   EventType = iota + 1 // a member appeared (or came back)
	EventLeave                       // a member left gracefully
	EventFail                        // a member was declared dead
	EventUpdate                      // a member's metadata changed

	// eventGone is memberlist's NotifyLeave, before applyEvent decides
	// between EventLeave and EventFail.
	eventGone EventType = -1
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFail:
		return "fail"
	case EventUpdate:
		return "update"
	}
	return "unknown"
}

// Event reports a change to one member. Ring is the ring version after the
// change was applied.
type Event struct {
	Type   EventType
	Member Member
	Ring   uint64
}

// Status is the JSON-friendly view for the admin /status endpoint.
type Status struct {
	Self    string     `json:"self"`
	Addr    string     `json:"addr"`
	Members []Member   `json:"members"`
	Ring    RingStatus `json:"ring"`
	// Join is the state of joining the seeds.
	Join JoinStatus `json:"join"`
	// MetaPending lists live peers that have not acknowledged this node's
	// latest metadata (as of the last check; see Config.MetaAckTimeout).
	MetaPending []string `json:"meta_pending,omitempty"`
}

// RingStatus describes the current ring.
type RingStatus struct {
	Version uint64             `json:"version"`
	Digest  string             `json:"digest"`
	Members []string           `json:"members"`
	Shares  map[string]float64 `json:"shares"`
}

// Stats counts what the package dropped or refused.
type Stats struct {
	// SubscriberDrops counts events a slow subscriber did not take.
	SubscriberDrops uint64
	// MetaDecodeErrors counts metadata from peers that failed to decode.
	MetaDecodeErrors uint64
	// MetaPushes counts metadata broadcasts.
	MetaPushes uint64
	// JoinFailures counts failed join attempts.
	JoinFailures uint64
	// MetaQueries counts peers asked which of our metadata they hold,
	// having not acknowledged it in time.
	MetaQueries uint64
	// MetaResends counts metadata sent directly (push/pull) to a peer that
	// still lagged after a query: each is a broadcast that did not arrive.
	MetaResends uint64
	// SyncErrors counts user messages that failed to decode.
	SyncErrors uint64
	// SyncDrops counts user messages dropped because the sync loop was
	// behind.
	SyncDrops uint64
	// ForceLeaveDrops counts force-leave messages dropped: malformed, or
	// arriving faster than they are applied.
	ForceLeaveDrops uint64
}
