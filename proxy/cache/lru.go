package cache

import "container/list"

// Policy chooses which objects a Memory store keeps within its byte
// budget. The store calls it under its own lock, so an implementation need
// not be safe for concurrent use. It is the seam where an admission policy
// (TinyUFO's S3-FIFO + TinyLFU) replaces the default LRU: the store keeps
// the objects, the policy only keys and weights.
type Policy interface {
	// Admit records a new or replaced object of weight bytes under key and
	// returns the keys to evict to stay within the budget; the list may
	// hold key itself, when the policy does not admit it.
	Admit(key string, weight int64) (evict []string)
	// Touch records a hit on key.
	Touch(key string)
	// Remove forgets key (invalidated, purged or replaced by a failure).
	Remove(key string)
}

// LRU is the least-recently-used Policy over a byte budget.
type LRU struct {
	max, total int64
	order      *list.List // front: most recently used
	items      map[string]*list.Element
}

type lruItem struct {
	key    string
	weight int64
}

var _ Policy = (*LRU)(nil)

// NewLRU returns an LRU that keeps at most maxBytes of weight.
func NewLRU(maxBytes int64) *LRU {
	return &LRU{max: maxBytes, order: list.New(), items: map[string]*list.Element{}}
}

// Admit adds or updates key and evicts from the cold end until the total
// fits; an object larger than the whole budget evicts only itself.
func (l *LRU) Admit(key string, weight int64) []string {
	if e, ok := l.items[key]; ok {
		it := e.Value.(*lruItem)
		l.total += weight - it.weight
		it.weight = weight
		l.order.MoveToFront(e)
	} else {
		l.items[key] = l.order.PushFront(&lruItem{key: key, weight: weight})
		l.total += weight
	}
	if weight > l.max {
		l.Remove(key)
		return []string{key}
	}
	var evict []string
	for l.total > l.max {
		e := l.order.Back()
		it := e.Value.(*lruItem)
		l.Remove(it.key)
		evict = append(evict, it.key)
	}
	return evict
}

// Touch moves key to the hot end.
func (l *LRU) Touch(key string) {
	if e, ok := l.items[key]; ok {
		l.order.MoveToFront(e)
	}
}

// Remove forgets key.
func (l *LRU) Remove(key string) {
	if e, ok := l.items[key]; ok {
		l.total -= e.Value.(*lruItem).weight
		l.order.Remove(e)
		delete(l.items, key)
	}
}
