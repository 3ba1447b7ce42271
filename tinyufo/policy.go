package tinyufo

// evictLocked takes entries out of the queues until the cache's weight
// plus extra fits Capacity, and leaves them in c.victims (still in the
// index, so admitLocked can put a single victim back). It follows
// S3-FIFO: the small queue is trimmed first while it holds at least its
// 10 % share, moving objects accessed more than once to the main queue;
// the main queue is a FIFO with reinsertion (an object with accesses left
// goes round again with one access fewer).
func (c *Cache[V]) evictLocked(extra int64) {
	c.victims = c.victims[:0]
	for c.small.weight+c.main.weight+extra > c.cap {
		e := c.evictOneLocked()
		if e == nil {
			return
		}
		c.weight.Add(-e.weight)
		c.victims = append(c.victims, e)
	}
}

func (c *Cache[V]) evictOneLocked() *entry[V] {
	if c.small.weight >= c.smallCap {
		if e := c.evictSmallLocked(); e != nil {
			return e
		}
	}
	return c.evictMainLocked()
}

func (c *Cache[V]) evictSmallLocked() *entry[V] {
	for {
		e := c.small.popFront()
		if e == nil {
			return nil
		}
		if e.uses.Load() > 1 {
			e.inMain = true
			c.main.pushBack(e)
			continue
		}
		return e
	}
}

func (c *Cache[V]) evictMainLocked() *entry[V] {
	for {
		e := c.main.popFront()
		if e == nil {
			return nil
		}
		if e.spend() {
			c.main.pushBack(e)
			continue
		}
		return e
	}
}

// dropVictimsLocked removes the entries evictLocked chose from the index
// and the tag index (they are already out of the queues and the weight).
func (c *Cache[V]) dropVictimsLocked() {
	for i, e := range c.victims {
		c.deleteLocked(e)
		c.untagLocked(e)
		c.len.Add(-1)
		c.evictions.Add(1)
		c.victims[i] = nil
	}
	c.victims = c.victims[:0]
}
