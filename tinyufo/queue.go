package tinyufo

import "sync/atomic"

// entry is one cached object. key, value, weight and tags never change
// after the entry is published in the index (Put of an existing key
// publishes a new entry), so Get reads them without the policy lock. uses
// is touched by Get atomically; the rest belongs to the policy lock. The
// key's hash is not stored (the policy recomputes it when it evicts): with
// a pointer V the entry fits a 64-byte allocation.
type entry[V any] struct {
	key    string
	value  V
	weight int64
	tags   *[]string    // nil when untagged
	uses   atomic.Int32 // accesses, capped at usesCap
	inMain bool         // which queue holds it
	prev   *entry[V]
	next   *entry[V]
}

// usesCap caps the access count, as in S3-FIFO and TinyUFO: an entry in
// the main queue survives at most usesCap passes without a new access, so
// an eviction scan stays short.
const usesCap = 3

// touch records an access.
func (e *entry[V]) touch() {
	if u := e.uses.Load(); u < usesCap {
		e.uses.CompareAndSwap(u, u+1) // a lost race loses one count: harmless
	}
}

// spend takes one access back and reports whether there was one.
func (e *entry[V]) spend() bool {
	for {
		u := e.uses.Load()
		if u == 0 {
			return false
		}
		if e.uses.CompareAndSwap(u, u-1) {
			return true
		}
	}
}

// fifo is an intrusive FIFO of entries with their total weight. Removal
// from the middle is O(1), so Remove and purge leave no tombstones.
type fifo[V any] struct {
	head, tail *entry[V]
	weight     int64
}

func (q *fifo[V]) pushBack(e *entry[V]) {
	e.prev, e.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = e
	} else {
		q.head = e
	}
	q.tail = e
	q.weight += e.weight
}

func (q *fifo[V]) remove(e *entry[V]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		q.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		q.tail = e.prev
	}
	e.prev, e.next = nil, nil
	q.weight -= e.weight
}

func (q *fifo[V]) popFront() *entry[V] {
	e := q.head
	if e != nil {
		q.remove(e)
	}
	return e
}

// replace puts n where o is (same queue, same place).
func (q *fifo[V]) replace(o, n *entry[V]) {
	n.prev, n.next = o.prev, o.next
	if o.prev != nil {
		o.prev.next = n
	} else {
		q.head = n
	}
	if o.next != nil {
		o.next.prev = n
	} else {
		q.tail = n
	}
	o.prev, o.next = nil, nil
	q.weight += n.weight - o.weight
}
