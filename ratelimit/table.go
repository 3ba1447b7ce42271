package ratelimit

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// numShards splits a table's map so that concurrent requests for
// different keys rarely meet on one lock.
const numShards = 64

// table maps keys to *E in shards under read-write locks, holding at most
// max entries: a key past the cap is not tracked (getOrCreate reports it),
// so a flood of distinct keys cannot grow the heap without bound.
type table[E any] struct {
	seed   maphash.Seed
	max    int64
	n      atomic.Int64
	shards [numShards]shard[E]
}

type shard[E any] struct {
	mu sync.RWMutex
	m  map[string]*E
	_  [40]byte // keep shards on separate cache lines
}

func newTable[E any](maxEntries int) *table[E] {
	t := &table[E]{seed: maphash.MakeSeed(), max: int64(maxEntries)}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*E)
	}
	return t
}

func (t *table[E]) shard(key string) *shard[E] {
	return &t.shards[maphash.String(t.seed, key)%numShards]
}

// get returns key's entry or nil.
func (t *table[E]) get(key string) *E {
	s := t.shard(key)
	s.mu.RLock()
	e := s.m[key]
	s.mu.RUnlock()
	return e
}

// getOrCreate returns key's entry, making one with mk when there is none
// and the table has room. key is cloned (callers may pass a string that
// aliases a buffer) and mk receives the clone, which the table keeps. It
// returns nil when the table is full.
func (t *table[E]) getOrCreate(key string, mk func(key string) *E) (e *E, created bool) {
	if e := t.get(key); e != nil {
		return e, false
	}
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[key]; e != nil {
		return e, false
	}
	if t.n.Load() >= t.max {
		return nil, false
	}
	key = strings.Clone(key)
	e = mk(key)
	s.m[key] = e
	t.n.Add(1)
	return e, true
}

// put stores e under key, replacing any entry, when there is room.
func (t *table[E]) put(key string, e *E) bool {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok {
		if t.n.Load() >= t.max {
			return false
		}
		t.n.Add(1)
	}
	s.m[key] = e
	return true
}

// len is the number of entries.
func (t *table[E]) len() int { return int(t.n.Load()) }

// each calls fn for every entry, one shard at a time under its read lock;
// fn must not call back into the table.
func (t *table[E]) each(fn func(key string, e *E)) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for k, e := range s.m {
			fn(k, e)
		}
		s.mu.RUnlock()
	}
}

// sweep removes the entries for which drop returns true, one shard at a
// time under its write lock, and returns how many it removed.
func (t *table[E]) sweep(drop func(key string, e *E) bool) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if drop(k, e) {
				delete(s.m, k)
				n++
			}
		}
		s.mu.Unlock()
	}
	t.n.Add(int64(-n))
	return n
}

// remove deletes key's entry if it is e.
func (t *table[E]) remove(key string, e *E) {
	s := t.shard(key)
	s.mu.Lock()
	if s.m[key] == e {
		delete(s.m, key)
		t.n.Add(-1)
	}
	s.mu.Unlock()
}
