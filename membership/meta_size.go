package membership

import (
	"fmt"
	"math"
	"strings"

	"github.com/hashicorp/memberlist"
)

// MaxMeta returns m with every field that changes while a node runs at
// its largest encoding: the longest state, the largest counters and
// config version, the raft flags set. The counts (upstream peers,
// connections in flight) are taken below 2^32, which a node's config
// (at most 1 MiB) and file descriptors keep them under; the config
// version may take all 64 bits. The fields a node fixes at start
// (addresses, version, zone, weight) and ClusterID stay m's: the caller
// sets ClusterID to the longest ID the node may hold.
func MaxMeta(m Meta) Meta {
	m = m.withDefaults()
	for _, s := range []NodeState{StateStarting, StateReady, StateDraining} {
		if len(s) > len(m.State) {
			m.State = s
		}
	}
	m.Health = Health{Healthy: math.MaxUint32, Total: math.MaxUint32}
	m.Load = Load{InFlight: math.MaxUint32, RPS: math.MaxFloat32}
	m.ConfigVersion = math.MaxUint64
	m.RaftState, m.RaftRecovering = true, true
	return m
}

// CheckMetaSize reports whether every metadata a node whose fixed fields
// are m's may gossip fits memberlist's MetaMaxSize: MaxMeta(m) must
// encode. It returns that largest encoding's size; when it does not fit,
// the error (wrapping ErrMetaTooLarge) says how many bytes each fixed
// field takes, so the operator knows what to shorten. A node checks this
// at start: otherwise UpdateMeta would begin to fail only once a counter
// or the config version grew, and the node's metadata would stop
// refreshing while it runs.
func CheckMetaSize(m Meta) (int, error) {
	worst := MaxMeta(m)
	size := encodedSize(worst)
	if size <= memberlist.MetaMaxSize {
		return size, nil
	}
	// What each field adds: the encoding without it, subtracted.
	without := func(clear func(*Meta)) int {
		w := worst
		clear(&w)
		return size - encodedSize(w)
	}
	parts := []struct {
		what string
		n    int
	}{
		{fmt.Sprintf("%d proxy listener address(es) (the longest %q)", len(m.Addrs.Proxy), longest(m.Addrs.Proxy)), without(func(w *Meta) { w.Addrs.Proxy = nil })},
		{fmt.Sprintf("version %q", m.Version), without(func(w *Meta) { w.Version = "" })},
		{fmt.Sprintf("zone %q", m.Zone), without(func(w *Meta) { w.Zone = "" })},
		{fmt.Sprintf("admin address %q", m.Addrs.Admin), without(func(w *Meta) { w.Addrs.Admin = "" })},
		{fmt.Sprintf("cluster address %q", m.Addrs.Cluster), without(func(w *Meta) { w.Addrs.Cluster = "" })},
		{fmt.Sprintf("raft address %q", m.Addrs.Raft), without(func(w *Meta) { w.Addrs.Raft = "" })},
		{fmt.Sprintf("cluster ID (%d characters)", len(m.ClusterID)), without(func(w *Meta) { w.ClusterID = "" })},
	}
	var b strings.Builder
	rest := size
	for _, p := range parts {
		if p.n > 0 {
			fmt.Fprintf(&b, "%s: %d bytes; ", p.what, p.n)
			rest -= p.n
		}
	}
	return size, fmt.Errorf("%w: this node's gossip metadata can reach %d bytes, over memberlist's limit of %d by %d: %sthe rest (state, counters, config version, flags) takes %d",
		ErrMetaTooLarge, size, memberlist.MetaMaxSize, size-memberlist.MetaMaxSize, b.String(), rest)
}

// encodedSize is the size of m's encoding, whatever the limit.
func encodedSize(m Meta) int {
	b, err := encodeMetaUnbounded(m)
	if err != nil {
		return math.MaxInt
	}
	return len(b)
}

func longest(ss []string) string {
	l := ""
	for _, s := range ss {
		if len(s) > len(l) {
			l = s
		}
	}
	return l
}
