package proxy

import (
	"sort"

	"github.com/pingora-go/pingora-go/proxy/health"
)

// UpstreamStatus describes an upstream group of a Table for status pages.
type UpstreamStatus struct {
	Name     string       `json:"name"`
	Policy   string       `json:"lb"`
	Protocol string       `json:"protocol"`
	Peers    []PeerStatus `json:"peers"`
}

// PeerStatus is one peer's live state.
type PeerStatus struct {
	Addr     string `json:"addr"`
	Weight   int    `json:"weight"`
	InFlight int64  `json:"in_flight"`
	// MaxConns is the peer's ConnLimit.Max (omitted: no cap).
	MaxConns int `json:"max_conns,omitempty"`
	health.Snapshot
}

// Upstreams lists the table's groups, sorted by name, with live peer state.
func (t *Table) Upstreams() []UpstreamStatus {
	out := make([]UpstreamStatus, 0, len(t.upstreams))
	for _, g := range t.upstreams {
		us := UpstreamStatus{Name: g.cfg.Name, Policy: g.cfg.Policy, Protocol: g.cfg.Peers[0].Protocol.String()}
		if us.Policy == "" {
			us.Policy = "round_robin"
		}
		for i, p := range g.cfg.Peers {
			w := p.Weight
			if w == 0 {
				w = 1
			}
			rec := g.records[i]
			us.Peers = append(us.Peers, PeerStatus{Addr: p.Addr, Weight: w, InFlight: rec.State().InFlight.Load(), MaxConns: p.Conns.Max, Snapshot: rec.Snapshot()})
		}
		out = append(out, us)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Routes returns the number of routes in the table.
func (t *Table) Routes() int { return t.routes.Len() }
