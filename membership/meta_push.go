package membership

import (
	"slices"
	"time"
)

// UpdateMeta applies fn to a copy of this node's metadata and, if it still
// encodes within memberlist's 512-byte limit, publishes it: the change is
// broadcast promptly, but at most once per MetaPushInterval, later changes
// being coalesced into the next push. An oversized result is refused with
// ErrMetaTooLarge and nothing changes. fn must not call back into c.
func (c *Cluster) UpdateMeta(fn func(*Meta)) error {
	if err := c.setLocalMeta(fn); err != nil {
		return err
	}
	select {
	case c.metaKick <- struct{}{}:
	default: // a push is already pending; it will carry this change
	}
	return nil
}

// setLocalMeta applies fn and stores the encoding memberlist's NodeMeta
// returns, without broadcasting.
func (c *Cluster) setLocalMeta(fn func(*Meta)) error {
	c.metaMu.Lock()
	m := c.meta
	m.Addrs.Proxy = slices.Clone(m.Addrs.Proxy)
	fn(&m)
	m.Name = c.cfg.Name
	m = m.withDefaults()
	if m.Weight < 0 || m.Weight > maxWeight {
		c.metaMu.Unlock()
		return ErrWeight
	}
	enc, err := encodeMeta(m)
	if err != nil {
		c.metaMu.Unlock()
		return err
	}
	c.meta = m
	c.metaBytes.Store(&enc)
	c.metaMu.Unlock()
	return nil
}

// pushLoop broadcasts metadata changes, rate-limited to one per
// MetaPushInterval.
func (c *Cluster) pushLoop() {
	var last time.Time
	for {
		select {
		case <-c.stop:
			return
		case <-c.metaKick:
		}
		if wait := c.cfg.MetaPushInterval - c.cfg.Clock.Now().Sub(last); wait > 0 && !last.IsZero() {
			t := c.cfg.Clock.NewTimer(wait)
			select {
			case <-c.stop:
				t.Stop()
				return
			case <-t.C():
			}
		}
		last = c.cfg.Clock.Now()
		c.pushMeta()
	}
}

// pushMeta broadcasts the current metadata once.
func (c *Cluster) pushMeta() {
	ml, err := c.memberlist()
	if err != nil {
		return
	}
	// pushMu orders pushes against Leave: a push after Leave would announce
	// the node alive again, and one racing Leave would cancel its draining
	// broadcast (a newer broadcast about a node replaces the queued one).
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	if c.left {
		return
	}
	c.pushes.Add(1)
	// UpdateNode waits for the broadcast to go out; bound the wait so a
	// lone node (nobody to send to) does not stall later pushes.
	if err := ml.UpdateNode(time.Second); err != nil {
		c.log.Debug("membership: metadata broadcast not confirmed", "err", err)
	}
}
