package tinyufo

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Config configures a Cache. A zero field means its default.
type Config struct {
	// Capacity is the most total weight the cache holds, in the caller's
	// unit (bytes for an HTTP cache) (default 64 MiB).
	Capacity int64
	// EstimatedEntries is about how many objects fit, used to size the
	// admission sketch (default Capacity / 8 KiB, at least 16).
	EstimatedEntries int
}

// Defaults of Config.
const (
	DefaultCapacity      = 64 << 20
	DefaultMeanEntrySize = 8 << 10 // divides Capacity into the default EstimatedEntries
)

// DefaultConfig returns the configuration whose fields are all defaults.
func DefaultConfig() Config {
	return Config{Capacity: DefaultCapacity, EstimatedEntries: DefaultCapacity / DefaultMeanEntrySize}
}

// Validate reports the first field that is out of range.
func (c Config) Validate() error {
	switch {
	case c.Capacity < 0:
		return fmt.Errorf("tinyufo: Capacity (%d) cannot be negative", c.Capacity)
	case c.EstimatedEntries < 0:
		return fmt.Errorf("tinyufo: EstimatedEntries (%d) cannot be negative", c.EstimatedEntries)
	case c.EstimatedEntries > 1<<28:
		return fmt.Errorf("tinyufo: EstimatedEntries (%d) cannot exceed 2^28", c.EstimatedEntries)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Capacity == 0 {
		c.Capacity = DefaultCapacity
	}
	if c.EstimatedEntries == 0 {
		c.EstimatedEntries = int(min(c.Capacity/DefaultMeanEntrySize, 1<<28))
	}
	c.EstimatedEntries = max(c.EstimatedEntries, 16)
	return c
}

// shardCount index shards, each a map behind its own RWMutex: Get takes one
// shard's read lock and no other lock.
const shardCount = 64

type shard[V any] struct {
	mu     sync.RWMutex
	m      map[uint64]*entry[V]
	hits   atomic.Uint64
	misses atomic.Uint64
	_      [24]byte // keep neighbouring shards' hot words off this cache line
}

// Cache is a weighted in-memory cache with S3-FIFO eviction and TinyLFU
// admission (TinyUFO). Get never blocks on a writer of another shard and
// never allocates; Put, Remove and purges serialise on one policy mutex.
type Cache[V any] struct {
	seed   maphash.Seed
	cap    int64
	shards [shardCount]shard[V]

	mu        sync.Mutex // the policy: queues, sketch, tag index, the write side of the index
	small     fifo[V]
	main      fifo[V]
	smallCap  int64
	freq      *sketch
	tags      map[string]map[*entry[V]]struct{}
	victims   []*entry[V] // scratch for evictLocked
	len       atomic.Int64
	weight    atomic.Int64
	evictions atomic.Uint64
	rejected  atomic.Uint64
}

// New returns an empty Cache for cfg, or cfg's validation error.
func New[V any](cfg Config) (*Cache[V], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Cache[V]{
		seed:     maphash.MakeSeed(),
		cap:      cfg.Capacity,
		smallCap: cfg.Capacity/10 + 1, // S3-FIFO's small queue: 10 % of the weight
		freq:     newSketch(cfg.EstimatedEntries),
		tags:     make(map[string]map[*entry[V]]struct{}),
	}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*entry[V])
	}
	return c, nil
}

func (c *Cache[V]) shard(h uint64) *shard[V] { return &c.shards[h>>58] } // top 6 bits: 64 shards

// Get returns the value stored for key and counts a hit or a miss.
func (c *Cache[V]) Get(key string) (V, bool) {
	h := c.hash(key)
	s := c.shard(h)
	s.mu.RLock()
	e := s.m[h]
	s.mu.RUnlock()
	if e == nil || e.key != key {
		s.misses.Add(1)
		var zero V
		return zero, false
	}
	e.touch()
	s.hits.Add(1)
	return e.value, true
}

// Contains reports whether key is cached, without counting an access.
func (c *Cache[V]) Contains(key string) bool {
	h := c.hash(key)
	s := c.shard(h)
	s.mu.RLock()
	e := s.m[h]
	s.mu.RUnlock()
	return e != nil && e.key == key
}

// PutOptions are the optional parts of a Put.
type PutOptions struct {
	// Tags are the entry's surrogate keys, for RemoveTag. The cache keeps
	// the slice: do not modify it afterwards.
	Tags []string
	// Force skips the admission check (TinyUFO's force_put), for an object
	// that requests are known to be waiting for.
	Force bool
}

// Put stores value under key with the given weight (a weight below 1
// counts as 1) and reports whether the cache admitted it. A new key is
// rejected when its weight exceeds Capacity, or when making room for it
// would evict exactly one object that the admission sketch rates more
// popular than it. Replacing a cached key always succeeds (if it fits).
// A rejected Put leaves any value already cached for key in place: a
// caller replacing a stale object it could not store must Remove it.
func (c *Cache[V]) Put(key string, value V, weight int64) bool {
	return c.PutWith(key, value, weight, PutOptions{})
}

// PutWith is Put with tags or without the admission check.
func (c *Cache[V]) PutWith(key string, value V, weight int64, opt PutOptions) bool {
	weight = max(weight, 1)
	if weight > c.cap {
		c.rejected.Add(1)
		return false
	}
	h := c.hash(key)
	e := &entry[V]{key: key, value: value, weight: weight}
	if len(opt.Tags) > 0 {
		tags := opt.Tags // only a tagged Put pays for the slice header
		e.tags = &tags
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	freq := c.freq.incr(h)
	if old := c.shard(h).m[h]; old != nil { // reading the index under mu needs no shard lock: writers hold mu
		if old.key == key {
			c.replaceLocked(h, old, e)
			return true
		}
		c.removeLocked(old) // a 64-bit hash collision: the newcomer takes the slot
	}
	if !c.admitLocked(h, e, freq, opt.Force) {
		c.rejected.Add(1)
		return false
	}
	return true
}

// replaceLocked swaps a new version of a cached key into the old one's
// place, keeping its queue position and access count plus one.
func (c *Cache[V]) replaceLocked(h uint64, old, e *entry[V]) {
	e.uses.Store(min(old.uses.Load()+1, usesCap))
	e.inMain = old.inMain
	c.queue(old).replace(old, e)
	c.untagLocked(old)
	c.tagLocked(e)
	c.storeLocked(h, e)
	c.weight.Add(e.weight - old.weight)
	c.evictLocked(0)
	c.dropVictimsLocked()
}

// admitLocked makes room for e and inserts it into the small queue, unless
// TinyLFU prefers the single object that would leave for it.
func (c *Cache[V]) admitLocked(h uint64, e *entry[V], freq uint8, force bool) bool {
	c.evictLocked(e.weight)
	if !force && len(c.victims) == 1 && c.freq.get(c.hash(c.victims[0].key)) > freq {
		// The victim is more popular: it stays (back in the small queue,
		// as a new object, as TinyUFO does) and the newcomer is rejected.
		v := c.victims[0]
		c.victims = c.victims[:0]
		v.uses.Store(0)
		v.inMain = false
		c.small.pushBack(v)
		c.weight.Add(v.weight)
		return false
	}
	c.dropVictimsLocked()
	c.small.pushBack(e)
	c.tagLocked(e)
	c.storeLocked(h, e)
	c.len.Add(1)
	c.weight.Add(e.weight)
	return true
}

func (c *Cache[V]) queue(e *entry[V]) *fifo[V] {
	if e.inMain {
		return &c.main
	}
	return &c.small
}

func (c *Cache[V]) hash(key string) uint64 { return maphash.String(c.seed, key) }

func (c *Cache[V]) storeLocked(h uint64, e *entry[V]) {
	s := c.shard(h)
	s.mu.Lock()
	s.m[h] = e
	s.mu.Unlock()
}

func (c *Cache[V]) deleteLocked(e *entry[V]) {
	h := c.hash(e.key)
	s := c.shard(h)
	s.mu.Lock()
	if s.m[h] == e {
		delete(s.m, h)
	}
	s.mu.Unlock()
}

// removeLocked takes a cached entry out of its queue, the index and the
// tag index.
func (c *Cache[V]) removeLocked(e *entry[V]) {
	c.queue(e).remove(e)
	c.deleteLocked(e)
	c.untagLocked(e)
	c.len.Add(-1)
	c.weight.Add(-e.weight)
}

// Remove drops key and reports whether it was cached.
func (c *Cache[V]) Remove(key string) bool {
	h := c.hash(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.shard(h).m[h]
	if e == nil || e.key != key {
		return false
	}
	c.removeLocked(e)
	return true
}
