package health

import (
	"sync"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/lb"
)

// Registry holds one Record per peer key. It is shared by every routing
// table a proxy builds, so health survives config swaps; Retain drops the
// records no live table uses.
type Registry struct {
	clock    clock.Clock
	onChange func(Change)

	mu      sync.Mutex
	records map[string]*Record
}

// NewRegistry returns an empty registry. onChange, if not nil, is called
// (outside any lock) on every verdict flip; clk nil means the real clock.
func NewRegistry(clk clock.Clock, onChange func(Change)) *Registry {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Registry{clock: clk, onChange: onChange, records: map[string]*Record{}}
}

// Get returns the record for key, creating a healthy one for addr.
func (g *Registry) Get(key, addr string) *Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.records[key]
	if r == nil {
		r = &Record{key: key, addr: addr, state: lb.NewState(), reg: g, activeUp: true, healthy: true}
		g.records[key] = r
	}
	return r
}

// Retain keeps exactly the records in keep, those the live routing table
// uses, and retires the others: a retired record stops its ejection timer
// and reports no more changes, so a request of an old table that still
// holds one finishes without touching health metrics, and a peer that
// comes back later starts healthy. A retired record in keep (built for a
// table before another swap retired it) is taken back.
func (g *Registry) Retain(keep []*Record) {
	live := make(map[string]*Record, len(keep))
	for _, r := range keep {
		live[r.key] = r
	}
	g.mu.Lock()
	old := g.records
	g.records = live
	g.mu.Unlock()
	for k, r := range old {
		if live[k] != r {
			r.retire()
		}
	}
	for _, r := range live {
		r.revive()
	}
}

// Len returns the number of records held.
func (g *Registry) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.records)
}

func (g *Registry) notify(ch *Change) {
	if ch != nil && g.onChange != nil {
		g.onChange(*ch)
	}
}
