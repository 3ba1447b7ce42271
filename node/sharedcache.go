package node

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/membership"
	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/sharedcache"
	"github.com/pingora-go/pingora-go/wire"
)

// cacheOwnerTimeout is the shared cache's OwnerTimeout; 0 keeps its
// default (nanoseconds; a variable for tests, which raise it where a
// loaded machine must not turn a slow owner into a second origin fill).
var cacheOwnerTimeout atomic.Int64

// cachePart is the node's HTTP cache (issue 14): sharedcache's two
// tiers, the client it calls key owners with, and the loop that gives it
// the ring. The proxy's default store is its local tier; routes with
// cache.shared use the cluster view.
type cachePart struct {
	c      *sharedcache.Cache
	client *wire.Client

	mu   sync.Mutex
	stop chan struct{} // closed by stopCache
	// follow ends the running ring loop (unfollowCacheRing); nil when
	// none was started since the last one ended so.
	follow  chan struct{}
	done    chan struct{} // closed when the ring loop ends; nil if it never ran
	last    *cacheRing    // the ring the cache has; written by the ring loop
	stopped bool

	// follows reports whether the rings follow a membership yet
	// (ringStep); nil: always.
	follows func(*membership.Cluster) bool

	// retrying: a RetryPurgeSync runs (retries, joined by stopCache)
	retrying atomic.Bool
	retries  sync.WaitGroup
}

// newCache builds the cache part from the node file: cache_memory_bytes
// caps both tiers together (a sixteenth for the hot copies). It starts
// nothing.
func (n *Node) newCache(cfg *config.Node) (*cachePart, error) {
	p := &cachePart{stop: make(chan struct{}), follows: func(mc *membership.Cluster) bool { return n.limitMembers() == mc }}
	client, err := wire.NewClient(wire.ClientConfig{Dialer: wire.DialerFunc(n.dial), MaxIdleStreamConns: 64,
		Logger: n.log.With("part", "cache-rpc")})
	if err != nil {
		return nil, err
	}
	hot := max(cfg.CacheMemoryBytes/16, 1)
	c, err := sharedcache.New(sharedcache.Config{
		Name: cfg.Name, MaxBytes: cfg.CacheMemoryBytes - hot, HotBytes: hot, Client: client,
		Origin: sharedcache.OriginFunc(n.fillForPeer), Logger: n.log.With("part", "cache"),
		OwnerTimeout: time.Duration(cacheOwnerTimeout.Load()),
	})
	if err != nil {
		client.Close()
		return nil, err
	}
	p.c, p.client = c, client
	n.reg.MustRegister(cacheCollector{c})
	return p, nil
}

// fillForPeer fetches a key this node owns for another node, through
// this node's own route and phases (the same replicated config the peer
// routed by).
func (n *Node) fillForPeer(ctx context.Context, f sharedcache.OriginFill) {
	n.srv.FillCache(ctx, proxy.CacheFill{Request: f.Request, Key: f.Key, VariantKey: f.VariantKey, Index: f.Index,
		Fill: f.Fill, Stale: f.Stale, Store: f.Store})
}

// stores returns the store of unshared routes (the proxy's default)
// and of shared ones.
func (p *cachePart) stores() (local, shared cache.Store) {
	return localWithStats{p.c.Local(), p.c}, p.c
}

// localWithStats is the local view with the node cache's figures (both
// tiers), which the proxy exports as pingora_cache_objects, _bytes and
// _max_bytes.
type localWithStats struct {
	cache.Store
	c *sharedcache.Cache
}

var _ cache.StatsReporter = localWithStats{}

func (l localWithStats) Stats() cache.Stats {
	st := l.c.Stats()
	return cache.Stats{Objects: st.Local.Objects + st.Hot.Objects, Bytes: st.Local.Bytes + st.Hot.Bytes,
		MaxBytes: st.Local.MaxBytes + st.Hot.MaxBytes, Evictions: st.Local.Evictions + st.Hot.Evictions}
}

// followCacheRing starts following the ring when the node gossips; the
// cache serves every key itself until then. Called after gossip started,
// again when gossip starts anew after a failed hand-off (lifecycle.reopen);
// unfollowCacheRing, and stopCache, end the loop.
func (n *Node) followCacheRing() error {
	p := n.cache
	mc := n.Members()
	if mc == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.follow != nil {
		return nil
	}
	p.follow, p.done = make(chan struct{}), make(chan struct{})
	events, cancel := mc.Subscribe(16) // hints: the loop also polls every second
	go p.followRing(mc, events, cancel, p.follow, p.done)
	return nil
}

// unfollowCacheRing ends the ring loop, before the membership it follows
// stops for a hand-off (lifecycle.release); the cache keeps the last ring.
// The loop ends with that membership anyway (its events close), and
// followCacheRing, run again if the hand-off fails, follows the new one.
func (n *Node) unfollowCacheRing() {
	p := n.cache
	p.mu.Lock()
	follow, done := p.follow, p.done
	p.follow = nil
	p.mu.Unlock()
	if follow != nil {
		close(follow)
		<-done
	}
}

// followRing gives the cache the ring whenever membership changes, and
// checks once a second (events may be dropped); after a failed hand-off,
// once the rings follow mc (ringStep).
func (p *cachePart) followRing(mc *membership.Cluster, events <-chan membership.Event, cancel func(), follow, done chan struct{}) {
	defer close(done)
	defer cancel()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		p.ringStep(mc)
		select {
		case <-p.stop:
			return
		case <-follow:
			return
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-t.C:
		}
	}
}

// ringStep installs the current ring if it changed: its digest covers
// the members, their weights and their cluster addresses. SetRing first
// exchanges purge logs with the members that came back; an exchange that
// failed is tried again at every step.
//
// A membership started after a failed hand-off holds only this node
// until it has joined the others again: until the rings follow it
// (Node.limitMembers), the cache keeps the released one's ring, instead
// of owning every key meanwhile (TestRingsKeptUntilRejoined).
func (p *cachePart) ringStep(mc *membership.Cluster) {
	if p.follows != nil && !p.follows(mc) {
		return
	}
	r := newCacheRing(mc.Ring())
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	if last != nil && last.Digest() == r.Digest() {
		p.retryPurgeSync()
		return
	}
	p.c.SetRing(r)
	p.mu.Lock()
	p.last = r
	p.mu.Unlock()
}

// retryPurgeSync runs the cache's RetryPurgeSync beside the ring loop, one
// at a time: a member that does not answer holds it up to the owner
// timeout, which must not hold back the next ring change as long.
func (p *cachePart) retryPurgeSync() {
	if !p.retrying.CompareAndSwap(false, true) {
		return
	}
	p.retries.Add(1)
	go func() {
		defer p.retries.Done()
		defer p.retrying.Store(false)
		p.c.RetryPurgeSync()
	}()
}

// ringVersion returns the Version of the ring the cache has (0: none).
func (p *cachePart) ringVersion() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		return 0
	}
	return p.last.version
}

// cacheRing is membership's ring as sharedcache sees it, with Version
// from the digest (comparable across nodes, where membership's version is
// local). Members and their cluster RPC addresses (Addr) come from the
// ring snapshot itself.
type cacheRing struct {
	*membership.Ring
	version uint64
}

var _ sharedcache.Ring = (*cacheRing)(nil)

func newCacheRing(r *membership.Ring) *cacheRing {
	cr := &cacheRing{Ring: r}
	if r.Len() > 0 {
		v, err := strconv.ParseUint(r.Digest(), 16, 64)
		if err != nil || v == 0 {
			v = 1
		}
		cr.version = v
	}
	return cr
}

// Version identifies the placement across nodes (0: an empty ring).
func (r *cacheRing) Version() uint64 { return r.version }

// drainCache stops taking keys from other nodes and finishes the streams
// this node sends them, while ctx lasts.
func (n *Node) drainCache(ctx context.Context) {
	if err := n.cache.c.Drain(ctx); err != nil {
		n.log.Warn("cache streams to other nodes cut by the grace period", "err", err)
	}
}

// stopCache stops the ring loop, the fills run for peers and the client.
// It may be called more than once.
func (n *Node) stopCache() {
	p := n.cache
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	close(p.stop)
	done := p.done
	p.mu.Unlock()
	if done != nil {
		<-done
	}
	p.retries.Wait() // the loop that starts them has ended
	p.c.Close()
	p.client.Close()
}

// CacheStatus is the /status cache section.
type CacheStatus struct {
	Objects  int     `json:"objects"`
	Bytes    int64   `json:"bytes"`
	MaxBytes int64   `json:"max_bytes"`
	HitRatio float64 `json:"hit_ratio_1m"`
	Lookups  uint64  `json:"lookups_1m"`
	// OwnerCalls are calls to key owners waiting for an answer now.
	OwnerCalls int64 `json:"owner_calls_in_flight"`
	// Serving are streams this node sends other nodes now.
	Serving int64             `json:"serving_in_flight"`
	Detail  sharedcache.Stats `json:"detail"`
	// Inherited is what this process took over from the one it
	// upgraded (absent when it was not an upgrade, or from a version
	// that passes no cache).
	Inherited *sharedcache.InheritStats `json:"inherited,omitempty"`
}

func (n *Node) cacheStatus() *CacheStatus {
	st := n.cache.c.Stats()
	return &CacheStatus{Objects: st.Local.Objects + st.Hot.Objects, Bytes: st.Local.Bytes + st.Hot.Bytes,
		MaxBytes: st.Local.MaxBytes + st.Hot.MaxBytes, HitRatio: st.HitRatio, Lookups: st.Lookups1m,
		OwnerCalls: st.OwnerCalls, Serving: st.Serving, Detail: st, Inherited: n.inheritedCache()}
}

func (n *Node) inheritedCache() *sharedcache.InheritStats {
	in := n.cache.c.Inherited()
	if in.State == "" {
		return nil
	}
	return &in
}

// registerCacheAPI adds POST /v1/cache/purge (an admin write) and GET
// /v1/cache/stats.
func (n *Node) registerCacheAPI(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/cache/purge", n.adminWrite(bodyLimit(maxPurgeBody, n.purgeCache)))
	mux.HandleFunc("GET /v1/cache/stats", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		writeJSON(w, http.StatusOK, map[string]any{"nodes": n.cache.c.ClusterStats(ctx)})
	})
}

// maxPurgeBody bounds a purge request's body.
const maxPurgeBody = 1 << 20

// PurgeResult is the answer to POST /v1/cache/purge.
type PurgeResult struct {
	Nodes []sharedcache.NodePurge `json:"nodes"`
	// Dropped is the sum over the nodes that answered.
	Dropped int `json:"dropped"`
}

// purgeCache handles POST /v1/cache/purge: {"urls": [...], "prefixes":
// [...], "tags": [...]} purged on every node of the ring.
func (n *Node) purgeCache(w http.ResponseWriter, r *http.Request) {
	var p sharedcache.Purge
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPurgeBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "purge: " + err.Error()})
		return
	}
	if err := p.Validate(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	nodes, err := n.cache.c.PurgeCluster(ctx, p)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	res := PurgeResult{Nodes: nodes}
	for _, np := range nodes {
		res.Dropped += np.Dropped
	}
	n.log.Info("cache purged", "urls", len(p.URLs), "prefixes", len(p.Prefixes), "tags", len(p.Tags), "dropped", res.Dropped, "client", r.RemoteAddr)
	writeJSON(w, http.StatusOK, res)
}

// cacheCollector exports the cluster tier's figures to Prometheus.
type cacheCollector struct{ c *sharedcache.Cache }

var (
	descOwnerRPC = prometheus.NewDesc("pingora_cache_owner_rpc_seconds",
		"Time to a key owner's first answer (the object's head, or word that it asked the origin).", nil, nil)
	descTierLookups = prometheus.NewDesc("pingora_cache_tier_lookups_total",
		"Cache lookups by the tier that answered (local: owned keys and unshared routes; hot: copies of other nodes' keys; remote: the owner) and result (hit: a fresh response).",
		[]string{"tier", "result"}, nil)
	descTierBytes = prometheus.NewDesc("pingora_cache_tier_bytes_total",
		"Body bytes of the objects lookups found, by tier; remote counts bytes streamed from owners.", []string{"tier"}, nil)
	descToPeers = prometheus.NewDesc("pingora_cache_peer_bytes_total",
		"Body bytes this node streamed to other nodes as their keys' owner.", nil, nil)
	descCluster = prometheus.NewDesc("pingora_cache_cluster_events_total",
		"Cluster tier events: fallback (filled here, owner not asked), not_owner (an owner refused), call_error (a call failed; owner suspect), handoff (taken from a previous owner), origin_fill (filled for peers), refused (peer calls answered not-the-owner), ring_mismatch (served a peer with another ring).",
		[]string{"event"}, nil)
	descPurges   = prometheus.NewDesc("pingora_cache_purges_total", "Purges run on this node.", nil, nil)
	descPurged   = prometheus.NewDesc("pingora_cache_purged_objects_total", "Objects purges dropped on this node.", nil, nil)
	descReplayed = prometheus.NewDesc("pingora_cache_purges_replayed_total",
		"Purges this node missed (out of the ring when they ran) and applied from a returning member's log.", nil, nil)
	descSyncs = prometheus.NewDesc("pingora_cache_purge_syncs_total",
		"Purge log exchanges with members that came back to the ring, by result: ok, error (retried every second), short (the member's log did not reach back to the gap: every object stored before it was dropped).",
		[]string{"result"}, nil)
	descInFlight = prometheus.NewDesc("pingora_cache_owner_calls_in_flight",
		"Calls to key owners waiting for their answer.", nil, nil)
	descServing = prometheus.NewDesc("pingora_cache_serving_in_flight",
		"Lookup and fill streams this node serves to other nodes.", nil, nil)
	descHot = prometheus.NewDesc("pingora_cache_hot_bytes", "Bytes of the hot tier (copies of other nodes' keys).", nil, nil)
)

func (cc cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOwnerRPC, descTierLookups, descTierBytes, descToPeers, descCluster, descPurges, descPurged, descReplayed, descSyncs, descInFlight, descServing, descHot} {
		ch <- d
	}
}

func (cc cacheCollector) Collect(ch chan<- prometheus.Metric) {
	st := cc.c.Stats()
	buckets := make(map[float64]uint64, len(sharedcache.LatencyBuckets))
	var cum uint64
	for i, ub := range sharedcache.LatencyBuckets {
		cum += st.Latency.Counts[i]
		buckets[ub] = cum
	}
	ch <- prometheus.MustNewConstHistogram(descOwnerRPC, st.Latency.Count(), st.Latency.Sum, buckets)
	for name, t := range st.Tiers {
		ch <- prometheus.MustNewConstMetric(descTierLookups, prometheus.CounterValue, float64(t.Hits), name, "hit")
		ch <- prometheus.MustNewConstMetric(descTierLookups, prometheus.CounterValue, float64(t.Misses), name, "miss")
		ch <- prometheus.MustNewConstMetric(descTierBytes, prometheus.CounterValue, float64(t.Bytes), name)
	}
	ch <- prometheus.MustNewConstMetric(descToPeers, prometheus.CounterValue, float64(st.BytesToPeers))
	for ev, v := range map[string]uint64{"fallback": st.Fallbacks, "not_owner": st.NotOwner, "call_error": st.CallErrors,
		"handoff": st.Handoffs, "origin_fill": st.OriginFills, "refused": st.Refused, "ring_mismatch": st.RingMismatch} {
		ch <- prometheus.MustNewConstMetric(descCluster, prometheus.CounterValue, float64(v), ev)
	}
	ch <- prometheus.MustNewConstMetric(descPurges, prometheus.CounterValue, float64(st.Purges))
	ch <- prometheus.MustNewConstMetric(descPurged, prometheus.CounterValue, float64(st.Purged))
	ch <- prometheus.MustNewConstMetric(descReplayed, prometheus.CounterValue, float64(st.PurgesReplayed))
	for result, v := range st.PurgeSyncs {
		ch <- prometheus.MustNewConstMetric(descSyncs, prometheus.CounterValue, float64(v), result)
	}
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(st.OwnerCalls))
	ch <- prometheus.MustNewConstMetric(descServing, prometheus.GaugeValue, float64(st.Serving))
	ch <- prometheus.MustNewConstMetric(descHot, prometheus.GaugeValue, float64(st.Hot.Bytes))
}
