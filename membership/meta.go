package membership

import (
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// NodeState is a node's own view of its lifecycle, gossiped in Meta.
type NodeState string

const (
	StateStarting NodeState = "starting" // joined, not yet serving; off the ring
	StateReady    NodeState = "ready"    // serving; on the ring
	StateDraining NodeState = "draining" // finishing in-flight work; off the ring
)

// Meta is the metadata each node gossips about itself (issue 5 item 2). It is
// encoded with msgpack under one-letter keys behind a format byte, and must
// fit memberlist's 512-byte MetaMaxSize (CheckMetaSize bounds it for
// every value a node's changing fields may take); unknown keys from newer
// nodes are ignored.
type Meta struct {
	// Name is the node name. It is not encoded: memberlist carries it.
	Name string `msgpack:"-" json:"name"`
	// Version is the build version.
	Version string `msgpack:"v,omitempty" json:"version"`
	// Addrs are the node's service addresses.
	Addrs Addrs `msgpack:"a" json:"addrs"`
	// Zone is the failure domain (rack, availability zone).
	Zone string `msgpack:"z,omitempty" json:"zone,omitempty"`
	// Weight scales the node's ring share; 0 means 1, at most 100.
	Weight int `msgpack:"w,omitempty" json:"weight"`
	// State is the node's lifecycle state; draining nodes leave the ring.
	State NodeState `msgpack:"s" json:"state"`
	// Health summarises upstream peers as this node sees them.
	Health Health `msgpack:"h" json:"health"`
	// Load is the node's current load.
	Load Load `msgpack:"l" json:"load"`
	// ConfigVersion is the replicated config version the node has applied.
	ConfigVersion uint64 `msgpack:"c,omitempty" json:"config_version"`
	// RaftState is true once the node holds raft state (a log or a
	// configuration), so no fresh node bootstraps a second cluster.
	RaftState bool `msgpack:"x,omitempty" json:"raft_state,omitempty"`
	// ClusterID is the identity of the replicated state the node holds
	// ("" until it has some); nodes of different clusters never merge
	// (see identity.go).
	ClusterID string `msgpack:"ci,omitempty" json:"cluster_id,omitempty"`
	// RaftRecovering is true while the node, started without raft state
	// (a new node, or one whose data dir was lost), has not caught up with
	// the leader: it does not vote, and the leader keeps it a non-voter.
	RaftRecovering bool `msgpack:"q,omitempty" json:"raft_recovering,omitempty"`
}

// Addrs are a node's listening addresses, "host:port".
type Addrs struct {
	Proxy   []string `msgpack:"p,omitempty" json:"proxy,omitempty"`
	Admin   string   `msgpack:"a,omitempty" json:"admin,omitempty"`
	Cluster string   `msgpack:"c,omitempty" json:"cluster,omitempty"`
	Raft    string   `msgpack:"r,omitempty" json:"raft,omitempty"`
}

// Health counts upstream peers this node considers healthy.
type Health struct {
	Healthy int `msgpack:"h" json:"healthy"`
	Total   int `msgpack:"t" json:"total"`
}

// Load is a coarse load figure.
type Load struct {
	InFlight int64   `msgpack:"i" json:"in_flight"`
	RPS      float32 `msgpack:"r" json:"rps"`
}

// metaFormat is the first byte of encoded metadata, so another encoding can
// be told apart later.
const metaFormat byte = 1

// ErrMetaTooLarge is returned when metadata would not fit memberlist's
// MetaMaxSize (512 bytes), to send or received. It is never truncated.
var ErrMetaTooLarge = errors.New("membership: metadata too large")

func (m Meta) withDefaults() Meta {
	if m.Weight == 0 {
		m.Weight = 1
	}
	if m.State == "" {
		m.State = StateStarting
	}
	return m
}

// encodeMeta encodes m, failing with ErrMetaTooLarge rather than exceeding
// memberlist's limit (memberlist panics on oversized metadata).
func encodeMeta(m Meta) ([]byte, error) {
	out, err := encodeMetaUnbounded(m)
	if err != nil {
		return nil, err
	}
	if len(out) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMetaTooLarge, len(out), memberlist.MetaMaxSize)
	}
	return out, nil
}

// encodeMetaUnbounded is encodeMeta without the size limit.
func encodeMetaUnbounded(m Meta) ([]byte, error) {
	b, err := msgpack.Marshal(&m)
	if err != nil {
		return nil, fmt.Errorf("membership: encode metadata: %w", err)
	}
	return append([]byte{metaFormat}, b...), nil
}

// decodeMeta decodes metadata gossiped by node name. It refuses more than
// MetaMaxSize bytes as encodeMeta does: memberlist enforces the limit only
// on what a node sends, not on what it receives.
func decodeMeta(name string, b []byte) (Meta, error) {
	if len(b) > memberlist.MetaMaxSize {
		return Meta{Name: name}, fmt.Errorf("membership: metadata of %s: %w: %d bytes, limit %d", name, ErrMetaTooLarge, len(b), memberlist.MetaMaxSize)
	}
	if len(b) == 0 || b[0] != metaFormat {
		return Meta{Name: name}, fmt.Errorf("membership: metadata of %s: unknown format", name)
	}
	if err := checkLengths(b[1:]); err != nil {
		return Meta{Name: name}, fmt.Errorf("membership: metadata of %s: %w", name, err)
	}
	var m Meta
	if err := msgpack.Unmarshal(b[1:], &m); err != nil {
		return Meta{Name: name}, fmt.Errorf("membership: metadata of %s: %w", name, err)
	}
	m.Name = name
	return m, nil
}

// ErrWeight is returned when Meta.Weight is above 100.
var ErrWeight = errors.New("membership: Meta.Weight must be between 0 and 100")
