package sharedcache

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// Purge selects cached objects to drop on every node: by URL (the
// object and all its Vary variants and key additions), by URL prefix,
// and by surrogate key (the Surrogate-Key and Cache-Tag response fields).
// A URL or prefix without a scheme covers http and https. Purging drops
// hot copies too, and keeps fills under way from storing what it
// dropped.
type Purge struct {
	URLs     []string `json:"urls,omitempty" msgpack:"u,omitempty"`
	Prefixes []string `json:"prefixes,omitempty" msgpack:"p,omitempty"`
	Tags     []string `json:"tags,omitempty" msgpack:"t,omitempty"`
}

// maxPurgeItems bounds one purge's selectors.
const maxPurgeItems = 1000

// Validate reports the first selector that is not usable, by field.
func (p Purge) Validate() error {
	n := len(p.URLs) + len(p.Prefixes) + len(p.Tags)
	switch {
	case n == 0:
		return errors.New("sharedcache: purge selects nothing: give urls, prefixes or tags")
	case n > maxPurgeItems:
		return fmt.Errorf("sharedcache: purge has %d selectors, at most %d", n, maxPurgeItems)
	}
	for i, u := range p.URLs {
		if _, err := keyPrefixes(u); err != nil {
			return fmt.Errorf("sharedcache: urls[%d]: %w", i, err)
		}
	}
	for i, u := range p.Prefixes {
		if _, err := keyPrefixes(u); err != nil {
			return fmt.Errorf("sharedcache: prefixes[%d]: %w", i, err)
		}
	}
	for i, t := range p.Tags {
		if t == "" || strings.ContainsAny(t, " ,\t\r\n") {
			return fmt.Errorf("sharedcache: tags[%d]: %q is not a surrogate key (no spaces or commas)", i, t)
		}
	}
	return nil
}

// keyPrefixes returns the cache keys (proxy.DefaultCacheKey's form,
// "GET scheme://host/path?query") a URL stands for: one per scheme.
func keyPrefixes(raw string) ([]string, error) {
	schemes := []string{"http", "https"}
	s := raw
	if i := strings.Index(raw, "://"); i >= 0 {
		schemes = []string{strings.ToLower(raw[:i])}
		s = raw[i+3:]
	}
	if schemes[0] != "http" && schemes[0] != "https" {
		return nil, fmt.Errorf("%q: scheme must be http or https", raw)
	}
	u, err := url.Parse("http://" + s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%q is not a URL with a host", raw)
	}
	rest := cache.CleanPath(u.EscapedPath()) // the path as a request's key has it ("" is "/")
	if u.RawQuery != "" || u.ForceQuery {
		rest += "?" + u.RawQuery
	}
	out := make([]string, 0, len(schemes))
	for _, sc := range schemes {
		out = append(out, "GET "+sc+"://"+strings.ToLower(u.Host)+rest)
	}
	return out, nil
}

// matcher is a compiled Purge.
type matcher struct {
	exact, prefixes, tags []string
}

func (p Purge) compile() (matcher, error) {
	if err := p.Validate(); err != nil {
		return matcher{}, err
	}
	var m matcher
	for _, u := range p.URLs {
		ks, _ := keyPrefixes(u)
		m.exact = append(m.exact, ks...)
	}
	for _, u := range p.Prefixes {
		ks, _ := keyPrefixes(u)
		if !strings.HasSuffix(u, "/") && !strings.Contains(u, "?") && strings.Count(u, "/") <= 2 {
			for i := range ks { // "https://host" purges the whole host, not "/"
				ks[i] = strings.TrimSuffix(ks[i], "/")
			}
		}
		m.prefixes = append(m.prefixes, ks...)
	}
	m.tags = p.Tags
	return m, nil
}

// key reports whether the purge selects key by URL or prefix: an exact
// URL also selects its variants and key additions, which extend it after
// a NUL byte.
func (m matcher) key(k string) bool {
	for _, e := range m.exact {
		if strings.HasPrefix(k, e) && (len(k) == len(e) || k[len(e)] == 0) {
			return true
		}
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// fill reports whether the purge selects a fill under way (or a stored
// object, with its head). A purge by surrogate key selects every fill
// still waiting for its head (meta nil): its tags are not known yet, and
// its response may be what the purge meant to drop, asked for before it.
func (m matcher) fill(k string, meta *cache.Meta) bool {
	if m.key(k) {
		return true
	}
	if len(m.tags) == 0 {
		return false
	}
	if meta == nil {
		return true
	}
	for _, t := range SurrogateKeys(meta.Header) {
		if slices.Contains(m.tags, t) {
			return true
		}
	}
	return false
}

// PurgeLocal runs p on this node: both tiers, fills under way included.
// It returns how many stored objects it dropped.
func (c *Cache) PurgeLocal(p Purge) (int, error) {
	return c.applyLive(c.newEntry(p))
}

// newEntry makes p a purge run here now, with a new ID.
func (c *Cache) newEntry(p Purge) logEntry {
	return logEntry{Purge: p, ID: c.plog.newID(c.cfg.Name, c.started), At: c.cfg.Clock.Now().UnixNano()}
}

// applyLive runs e as it is issued: it drops every object it selects,
// whenever stored, and logs it first (a member being synced meanwhile
// gets it). A purge the log holds already ran here: it does nothing.
func (c *Cache) applyLive(e logEntry) (int, error) {
	m, err := e.compile()
	if err != nil {
		return 0, err
	}
	if !c.plog.add(e, c.cfg.Clock.Now(), c.cfg.PurgeLogBytes, c.cfg.PurgeLogAge) {
		return 0, nil
	}
	n := 0
	for _, t := range []struct {
		mem *cache.Memory
		idx interface {
			RemoveFunc(func(string, any) bool) int
			RemoveTag(string) int
		}
	}{{c.local, c.localIdx}, {c.hot, c.hotIdx}} {
		// Doom first: a fill that commits after this cannot store, and
		// one that committed before is in the index, dropped below.
		t.mem.DoomFills(m.fill)
		if len(m.exact)+len(m.prefixes) > 0 {
			n += t.idx.RemoveFunc(func(k string, _ any) bool { return m.key(k) })
		}
		for _, tag := range m.tags {
			n += t.idx.RemoveTag(tag)
		}
	}
	c.st.purges.Add(1)
	c.st.purged.Add(uint64(n))
	c.cfg.Logger.Info("sharedcache: purged", "id", e.ID, "urls", len(e.URLs), "prefixes", len(e.Prefixes), "tags", len(e.Tags), "dropped", n)
	return n, nil
}

// NodePurge is one node's part of a cluster-wide purge.
type NodePurge struct {
	Node    string `json:"node"`
	Dropped int    `json:"dropped"`
	Error   string `json:"error,omitempty"`
}

// purgeReply is methodPurge's answer.
type purgeReply struct {
	Dropped int `msgpack:"d"`
}

// servePurge runs a purge another node issued; one from a node that
// sends no ID (an older version) gets one here.
func (c *Cache) servePurge(_ context.Context, e *logEntry) (*purgeReply, error) {
	if e.ID == "" || e.At == 0 {
		*e = c.newEntry(e.Purge)
	}
	n, err := c.applyLive(*e)
	if err != nil {
		return nil, err
	}
	return &purgeReply{Dropped: n}, nil
}

// PurgeCluster runs p here and on every other member of the ring (and
// the members about to join it), in parallel, each call bounded by ctx;
// it returns each node's count (or error), this node's first. It fails
// only when p is invalid. A member out of the ring now gets p from a
// peer's log when it comes back.
func (c *Cache) PurgeCluster(ctx context.Context, p Purge) ([]NodePurge, error) {
	e := c.newEntry(p)
	n, err := c.applyLive(e)
	if err != nil {
		return nil, err
	}
	out := []NodePurge{{Node: c.cfg.Name, Dropped: n}}
	res := eachPeer(c, func(t target) NodePurge {
		np := NodePurge{Node: t.id}
		var r purgeReply
		if err := c.cfg.Client.Call(idempotent(ctx), t.addr, methodPurge, &e, &r); err != nil {
			np.Error = err.Error()
			c.syncLater(returning{target: t, since: e.At})
		}
		np.Dropped = r.Dropped
		return np
	})
	return append(out, res...), nil
}

// eachPeer calls call for every other member of the ring, in parallel,
// and returns the answers in the members' order.
func eachPeer[T any](c *Cache, call func(t target) T) []T {
	peers := c.peers()
	res := make([]T, len(peers))
	var wg sync.WaitGroup
	for i, t := range peers {
		wg.Add(1)
		go func() { // joined below; call is bounded by its caller's ctx
			defer wg.Done()
			res[i] = call(t)
		}()
	}
	wg.Wait()
	return res
}

// peers returns the other members of the current ring with an address,
// then the members joining it (being synced before the ring that has
// them is installed).
func (c *Cache) peers() []target {
	r := c.ring()
	if r == nil || c.cfg.Client == nil {
		return nil
	}
	var out []target
	for _, id := range r.Members() {
		if id == c.cfg.Name {
			continue
		}
		out = append(out, target{id: id, addr: r.Addr(id)})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, addr := range c.joining {
		if !containsTarget(out, id) {
			out = append(out, target{id: id, addr: addr})
		}
	}
	return out
}

// NodeStats is one node's Stats in a cluster-wide view.
type NodeStats struct {
	Node  string `json:"node"`
	Stats *Stats `json:"stats,omitempty"`
	Error string `json:"error,omitempty"`
}

// ClusterStats returns this node's Stats and every other ring member's,
// each call bounded by ctx.
func (c *Cache) ClusterStats(ctx context.Context) []NodeStats {
	st := c.Stats()
	out := []NodeStats{{Node: c.cfg.Name, Stats: &st}}
	res := eachPeer(c, func(t target) NodeStats {
		var s Stats
		if err := c.cfg.Client.Call(idempotent(ctx), t.addr, methodStats, &struct{}{}, &s); err != nil {
			return NodeStats{Node: t.id, Error: err.Error()}
		}
		return NodeStats{Node: t.id, Stats: &s}
	})
	return append(out, res...)
}
