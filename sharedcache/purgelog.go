package sharedcache

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// maxPurgeLogBytes bounds Config.PurgeLogBytes: a log travels whole in
// one sync message, within wire's 16 MiB frame.
const maxPurgeLogBytes = 8 << 20

// purgeSyncMargin is how far before a member left this node's ring a
// sync reaches back: failure detection takes seconds, and a purge run
// meanwhile reached the ring but not the member that was already cut
// off. Applying a purge twice is harmless (see applyLate).
const purgeSyncMargin = time.Minute

// purgeClockSlack widens a purge applied late: the objects requested up
// to this long after it ran go too. The time a purge ran comes from the
// clock of the node that ran it, an object's request time from its
// owner's; clocks agree to NTP precision, and erring this way keeps an
// object requested just before a purge from passing for a later one.
const purgeClockSlack = time.Second

// logEntry is one purge as every node applies and remembers it, and
// methodPurge's body: the selectors (inline, so a node that knows only
// Purge reads them), the cluster-unique ID the node that ran it gave it,
// and when it ran there (Unix nanoseconds).
type logEntry struct {
	Purge
	ID string `msgpack:"i,omitempty"`
	At int64  `msgpack:"a,omitempty"`
}

// weight is what the entry counts against PurgeLogBytes.
func (e *logEntry) weight() int64 {
	n := int64(64 + len(e.ID))
	for _, l := range [][]string{e.URLs, e.Prefixes, e.Tags} {
		for _, s := range l {
			n += int64(len(s))
		}
	}
	return n
}

// purgeLog is the purges this node applied, live or late, oldest first,
// bounded by bytes and age: what a member that missed some gets from it
// when it comes back to the ring.
type purgeLog struct {
	mu      sync.Mutex
	entries []logEntry
	ids     map[string]struct{}
	bytes   int64
	// horizon is the latest At of a purge dropped from the log (0: none
	// dropped): the log holds every purge this node applied after it.
	horizon int64
	seq     uint64
	// changed is closed, and replaced, whenever a purge is added
	// (changes): a cache streamed to a successor forwards the purges
	// applied here meanwhile.
	changed chan struct{}
	gen     uint64 // purges added, ever
}

// generation returns how many purges were added, ever: it changes with
// the log.
func (l *purgeLog) generation() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gen
}

// changes returns a channel closed at the next purge added.
func (l *purgeLog) changes() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.changed
}

// newID returns a cluster-unique ID for a purge run here: the node's
// name, when its cache started and a sequence number.
func (l *purgeLog) newID(name string, started time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return fmt.Sprintf("%s/%x/%d", name, started.UnixNano(), l.seq)
}

// add remembers e and reports true, or false when the log has its ID
// already (the purge was applied here). It then drops the entries older
// than maxAge and the oldest beyond maxBytes.
func (l *purgeLog) add(e logEntry, now time.Time, maxBytes int64, maxAge time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ids == nil {
		l.ids = map[string]struct{}{}
	}
	if _, ok := l.ids[e.ID]; ok {
		return false
	}
	l.ids[e.ID] = struct{}{}
	l.gen++
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	l.entries = append(l.entries, e)
	l.bytes += e.weight()
	cut := now.Add(-maxAge).UnixNano()
	drop := 0
	for drop < len(l.entries)-1 && (l.bytes > maxBytes || l.entries[drop].At < cut) {
		old := &l.entries[drop]
		l.bytes -= old.weight()
		l.horizon = max(l.horizon, old.At)
		delete(l.ids, old.ID)
		drop++
	}
	if drop > 0 {
		l.entries = append(l.entries[:0:0], l.entries[drop:]...)
	}
	return true
}

// has reports whether the log holds the purge id.
func (l *purgeLog) has(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.ids[id]
	return ok
}

// since returns the purges that ran at since or later, and the horizon.
func (l *purgeLog) since(since int64) ([]logEntry, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logEntry
	for _, e := range l.entries {
		if e.At >= since {
			out = append(out, e)
		}
	}
	return out, l.horizon
}

// size returns how many purges the log holds and its horizon.
func (l *purgeLog) size() (int, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries), l.horizon
}

// lateMatch is purges applied after they ran elsewhere, merged: for each
// URL, prefix and tag, when the latest purge selecting it ran (Unix ns).
// An object goes when its origin request began before that, or before
// cut (a gap no log covered; 0: none). Merged, a pass over the tiers
// costs a map lookup per object and tag, however many purges it applies.
type lateMatch struct {
	exact    map[string]int64
	prefixes []latePrefix
	tags     map[string]int64
	cut      int64
}

type latePrefix struct {
	prefix string
	at     int64
}

func newLateMatch(cut int64) *lateMatch {
	return &lateMatch{exact: map[string]int64{}, tags: map[string]int64{}, cut: cut}
}

// add merges the purge m that ran at at, widened by purgeClockSlack.
func (lm *lateMatch) add(m matcher, at int64) {
	at += int64(purgeClockSlack)
	for _, e := range m.exact {
		lm.exact[e] = max(lm.exact[e], at)
	}
	for _, p := range m.prefixes {
		lm.prefixes = append(lm.prefixes, latePrefix{p, at})
	}
	for _, t := range m.tags {
		lm.tags[t] = max(lm.tags[t], at)
	}
}

// keyAt returns when the latest purge selecting key by URL or prefix ran
// (0: none). An exact URL selects its variants and key additions, which
// extend it after a NUL byte.
func (lm *lateMatch) keyAt(key string) int64 {
	url := key
	if i := strings.IndexByte(key, 0); i >= 0 {
		url = key[:i]
	}
	at := lm.exact[url]
	for _, p := range lm.prefixes {
		if p.at > at && strings.HasPrefix(key, p.prefix) {
			at = p.at
		}
	}
	return at
}

// at returns when the latest purge selecting key, with head meta, ran.
func (lm *lateMatch) at(key string, meta *cache.Meta) int64 {
	at := max(lm.cut, lm.keyAt(key))
	if len(lm.tags) > 0 {
		for _, t := range SurrogateKeys(meta.Header) {
			at = max(at, lm.tags[t])
		}
	}
	return at
}

// object reports whether the stored object o of key goes.
func (lm *lateMatch) object(key string, o cache.Object) bool {
	m := o.Meta()
	return m.RequestTime.UnixNano() < lm.at(key, m)
}

// fill reports whether a fill under way of key, whose head is meta (nil
// before it arrives), may hold what a late purge selects: a fill without
// a head may have asked the origin before the purge ran.
func (lm *lateMatch) fill(key string, meta *cache.Meta) bool {
	if meta != nil {
		return meta.RequestTime.UnixNano() < lm.at(key, meta)
	}
	return lm.cut > 0 || len(lm.tags) > 0 || lm.keyAt(key) > 0
}

// applyLate applies purges this node missed, in one pass over both
// tiers: an object goes when its origin request began before a purge
// that selects it ran, or before cut (a gap no log covered); one fetched
// after stays. It logs the purges, skips those it applied already, and
// returns how many objects it dropped and how many purges were new.
func (c *Cache) applyLate(entries []logEntry, cut int64) (dropped, applied int) {
	lm := newLateMatch(cut)
	now := c.cfg.Clock.Now()
	for _, e := range entries {
		m, err := e.compile()
		if err != nil || e.ID == "" || !c.plog.add(e, now, c.cfg.PurgeLogBytes, c.cfg.PurgeLogAge) {
			continue
		}
		lm.add(m, e.At)
		applied++
	}
	if applied == 0 && cut == 0 {
		return 0, 0
	}
	for _, t := range []struct {
		mem *cache.Memory
		idx interface {
			RemoveFunc(func(string, any) bool) int
		}
	}{{c.local, c.localIdx}, {c.hot, c.hotIdx}} {
		t.mem.DoomFills(lm.fill)
		dropped += t.idx.RemoveFunc(func(k string, v any) bool {
			o, ok := v.(cache.Object)
			return ok && lm.object(k, o)
		})
	}
	c.st.replayed.Add(uint64(applied))
	c.st.purged.Add(uint64(dropped))
	args := []any{"purges", applied, "dropped", dropped}
	if cut > 0 {
		args = append(args, "and_all_requested_before", time.Unix(0, cut).UTC())
	}
	c.cfg.Logger.Info("sharedcache: applied purges missed while out of the ring", args...)
	return dropped, applied
}
