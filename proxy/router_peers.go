package proxy

import (
	"crypto/x509"
	"fmt"
	"sync"

	"github.com/pingora-go/pingora-go/proxy/health"
)

// What the Router keeps per peer identity (Peer.poolKey) outlives tables:
// health records, the peer gauges and transition counters, and, through
// PeerWatcher, the Server's pooled connections. A swap frees what the new
// table no longer uses (see issue 11: state keyed by a CA pool's pointer
// was lost, and leaked, on every apply).

// WatchPeers implements PeerWatcher: f gets the current table's peers now
// and each new table's peers in Swap, before it is installed.
func (r *Router) WatchPeers(f func(live []*Peer)) (stop func()) {
	r.swapMu.Lock()
	defer r.swapMu.Unlock()
	if r.watchers == nil {
		r.watchers = map[int]func([]*Peer){}
	}
	id := r.nextWatcher
	r.nextWatcher++
	r.watchers[id] = f
	f(r.table.Load().peers())
	return func() {
		r.swapMu.Lock()
		defer r.swapMu.Unlock()
		delete(r.watchers, id)
	}
}

var (
	_ PeerWatcher = (*Router)(nil)
	_ PeerWatcher = RouterApp{}
)

// WatchPeers implements PeerWatcher with the Router's.
func (a RouterApp) WatchPeers(f func(live []*Peer)) (stop func()) { return a.Router.WatchPeers(f) }

// peers lists every peer of t.
func (t *Table) peers() []*Peer {
	var out []*Peer
	for _, g := range t.upstreams {
		out = append(out, g.cfg.Peers...)
	}
	return out
}

// records lists the health record of every peer of t.
func (t *Table) records() []*health.Record {
	var out []*health.Record
	for _, g := range t.upstreams {
		out = append(out, g.records...)
	}
	return out
}

// peerSeries is a label pair of the peer gauge.
type peerSeries struct{ upstream, addr string }

// publishPeerMetrics sets the peer gauge for every peer of t (now the live
// table) and deletes the series of old's peers that t does not have, so
// the registry carries series for live peers only. The caller holds
// metricsMu, under which onHealthChange also writes, against the live
// table only.
func (r *Router) publishPeerMetrics(old, t *Table) {
	keep := map[peerSeries]bool{}
	addrs := map[string]bool{}
	for _, g := range t.upstreams {
		for i, rec := range g.records {
			addr := g.cfg.Peers[i].Addr
			keep[peerSeries{g.cfg.Name, addr}], addrs[addr] = true, true
			r.peerUp.WithLabelValues(g.cfg.Name, addr).Set(boolFloat(rec.State().Healthy()))
		}
	}
	if old == nil {
		return
	}
	for _, g := range old.upstreams {
		for _, p := range g.cfg.Peers {
			if !keep[peerSeries{g.cfg.Name, p.Addr}] {
				r.peerUp.DeleteLabelValues(g.cfg.Name, p.Addr)
			}
			if !addrs[p.Addr] {
				r.transitions.DeleteLabelValues(p.Addr, "up")
				r.transitions.DeleteLabelValues(p.Addr, "down")
			}
		}
	}
}

// caNames gives an identity to CA pools that come without a
// Peer.RootCAsID: a pool equal (x509.CertPool.Equal) to one of the live
// table keeps that pool's identity, so a config rebuilt with fresh but
// equal pools keeps its peers' state. Names are unique to the Router.
type caNames struct {
	mu   sync.Mutex
	next int
	live []namedPool // the pools of the live table
}

type namedPool struct {
	pool *x509.CertPool
	id   string
}

// name returns the identity of pool, looking in the live table's pools and
// in those named so far for the table being built (building, which it
// extends). owner makes names unique between Routers.
func (c *caNames) name(pool *x509.CertPool, building *[]namedPool, owner *Router) string {
	if id := findPool(*building, pool); id != "" {
		return id
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id := findPool(c.live, pool)
	if id == "" {
		c.next++
		id = fmt.Sprintf("pool:%p#%d", owner, c.next)
	}
	*building = append(*building, namedPool{pool, id})
	return id
}

func findPool(pools []namedPool, pool *x509.CertPool) string {
	for _, n := range pools {
		if n.pool == pool || n.pool.Equal(pool) {
			return n.id
		}
	}
	return ""
}

func (c *caNames) setLive(pools []namedPool) {
	c.mu.Lock()
	c.live = pools
	c.mu.Unlock()
}

// nameCA fixes the identity of a peer whose CA pool has no RootCAsID. A
// peer whose identity is already fixed (it was in an earlier table, or
// served requests) keeps it, and equal pools of the table take it on.
func (r *Router) nameCA(p *Peer, building *[]namedPool) {
	if p.RootCAs == nil || p.RootCAsID != "" || !p.UsesTLS() {
		return
	}
	if k := p.key.Load(); k != nil {
		if findPool(*building, p.RootCAs) == "" {
			*building = append(*building, namedPool{p.RootCAs, k.ca})
		}
		return
	}
	p.key.CompareAndSwap(nil, p.identity(r.cas.name(p.RootCAs, building, r)))
}
