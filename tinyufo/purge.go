package tinyufo

import "strings"

func (c *Cache[V]) tagLocked(e *entry[V]) {
	if e.tags == nil {
		return
	}
	for _, t := range *e.tags {
		set := c.tags[t]
		if set == nil {
			set = make(map[*entry[V]]struct{})
			c.tags[t] = set
		}
		set[e] = struct{}{}
	}
}

func (c *Cache[V]) untagLocked(e *entry[V]) {
	if e.tags == nil {
		return
	}
	for _, t := range *e.tags {
		set := c.tags[t]
		delete(set, e)
		if len(set) == 0 {
			delete(c.tags, t)
		}
	}
}

// RemoveTag drops every entry stored with tag (PutOptions.Tags) and
// returns how many. It costs the number of tagged entries, not a scan.
func (c *Cache[V]) RemoveTag(tag string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := c.tags[tag]
	n := len(set)
	for e := range set {
		c.removeLocked(e) // also deletes e from set: safe while ranging
	}
	return n
}

// RemovePrefix drops every entry whose key starts with prefix and returns
// how many. It scans the index one shard at a time, so Gets on other
// shards and Puts between shards go on.
func (c *Cache[V]) RemovePrefix(prefix string) int {
	return c.RemoveFunc(func(key string, _ V) bool { return strings.HasPrefix(key, prefix) })
}

// RemoveFunc drops every entry for which match returns true and returns
// how many. match runs under a shard's read lock: it must not call the
// cache.
func (c *Cache[V]) RemoveFunc(match func(key string, value V) bool) int {
	n := 0
	var batch []*entry[V]
	for i := range c.shards {
		s := &c.shards[i]
		batch = batch[:0]
		s.mu.RLock()
		for _, e := range s.m {
			if match(e.key, e.value) {
				batch = append(batch, e)
			}
		}
		s.mu.RUnlock()
		if len(batch) == 0 {
			continue
		}
		c.mu.Lock()
		for _, e := range batch {
			if h := c.hash(e.key); c.shard(h).m[h] == e { // not replaced or evicted since
				c.removeLocked(e)
				n++
			}
		}
		c.mu.Unlock()
	}
	return n
}

// Range calls f for each entry until f returns false. Entries added or
// removed meanwhile may or may not be seen. f runs under a shard's read
// lock: it must not call the cache.
func (c *Cache[V]) Range(f func(key string, value V, weight int64) bool) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		for _, e := range s.m {
			if !f(e.key, e.value, e.weight) {
				s.mu.RUnlock()
				return
			}
		}
		s.mu.RUnlock()
	}
}

// Stats is a snapshot of a Cache's size and counters.
type Stats struct {
	Len        int64  // entries
	Weight     int64  // sum of the entries' weights
	Capacity   int64  // Config.Capacity
	Hits       uint64 // Gets that found their key
	Misses     uint64 // Gets that did not
	Evictions  uint64 // entries dropped to make room (not Remove or purges)
	Rejections uint64 // Puts the cache did not admit
}

// Stats returns the current counters. Each is read atomically; together
// they are not one instant's snapshot.
func (c *Cache[V]) Stats() Stats {
	st := Stats{
		Len:        c.len.Load(),
		Weight:     c.weight.Load(),
		Capacity:   c.cap,
		Evictions:  c.evictions.Load(),
		Rejections: c.rejected.Load(),
	}
	for i := range c.shards {
		st.Hits += c.shards[i].hits.Load()
		st.Misses += c.shards[i].misses.Load()
	}
	return st
}

// Len is the number of entries.
func (c *Cache[V]) Len() int { return int(c.len.Load()) }

// Weight is the total weight of the entries.
func (c *Cache[V]) Weight() int64 { return c.weight.Load() }

// Cap is Config.Capacity.
func (c *Cache[V]) Cap() int64 { return c.cap }
