package health

import (
	"sync"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/lb"
)

// Registry holds one Record per peer key. It is shared by every routing
// table a proxy builds, so health survives config swaps.
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

func (g *Registry) notify(ch *Change) {
	if ch != nil && g.onChange != nil {
		g.onChange(*ch)
	}
}
