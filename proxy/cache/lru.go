package cache

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// Index holds a Memory store's complete objects by key within a byte
// budget, and chooses which to evict. It is the seam where an admission
// policy replaces the default LRU: a *tinyufo.Cache[any] (S3-FIFO +
// TinyLFU) satisfies it as it is. It must be safe for concurrent use.
// When it also has Len() int and Weight() int64, and Evictions() uint64,
// the store reports them in Stats.
type Index interface {
	// Get returns the value stored under key and counts an access.
	Get(key string) (any, bool)
	// Put stores v under key, weighing weight bytes, and reports whether
	// it was admitted; a refused Put may leave an older value in place.
	Put(key string, v any, weight int64) bool
	// Remove drops key and reports whether it was there.
	Remove(key string) bool
}

// indexSize and indexEvictions are the optional figures of an Index.
type (
	indexSize interface {
		Len() int
		Weight() int64
	}
	indexEvictions interface{ Evictions() uint64 }
)

// LRU is the least-recently-used Index over a byte budget: the default.
type LRU struct {
	mu        sync.Mutex
	max       int64
	total     int64
	order     *list.List // front: most recently used
	items     map[string]*list.Element
	evictions atomic.Uint64
}

type lruItem struct {
	key    string
	value  any
	weight int64
}

var (
	_ Index          = (*LRU)(nil)
	_ indexSize      = (*LRU)(nil)
	_ indexEvictions = (*LRU)(nil)
)

// NewLRU returns an LRU that holds at most maxBytes of weight.
func NewLRU(maxBytes int64) *LRU {
	return &LRU{max: maxBytes, order: list.New(), items: map[string]*list.Element{}}
}

// Get returns key's value and makes it the most recently used.
func (l *LRU) Get(key string) (any, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.items[key]
	if !ok {
		return nil, false
	}
	l.order.MoveToFront(e)
	return e.Value.(*lruItem).value, true
}

// Put adds or replaces key, then evicts from the cold end until the total
// fits. A value larger than the whole budget is refused and changes
// nothing.
func (l *LRU) Put(key string, v any, weight int64) bool {
	if weight > l.max {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.items[key]; ok {
		it := e.Value.(*lruItem)
		l.total += weight - it.weight
		it.value, it.weight = v, weight
		l.order.MoveToFront(e)
	} else {
		l.items[key] = l.order.PushFront(&lruItem{key: key, value: v, weight: weight})
		l.total += weight
	}
	for l.total > l.max {
		l.removeLocked(l.order.Back())
		l.evictions.Add(1)
	}
	return true
}

// Remove drops key.
func (l *LRU) Remove(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.items[key]
	if ok {
		l.removeLocked(e)
	}
	return ok
}

func (l *LRU) removeLocked(e *list.Element) {
	it := e.Value.(*lruItem)
	l.total -= it.weight
	l.order.Remove(e)
	delete(l.items, it.key)
}

// Len returns how many values are held.
func (l *LRU) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.items)
}

// Weight returns the total weight held.
func (l *LRU) Weight() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Evictions returns how many values were dropped to make room.
func (l *LRU) Evictions() uint64 { return l.evictions.Load() }
