package membership

import (
	"bytes"
	"slices"
	"time"
)

// announcement is the metadata memberlist gossips for this node: what
// NodeMeta returns, set just before each broadcast. Peers acknowledge its
// hash (meta_sync.go).
type announcement struct {
	hash  uint64 // metaHash(bytes)
	bytes []byte
	at    time.Time // when it was broadcast
}

// UpdateMeta applies fn to a copy of this node's metadata and, if it still
// encodes within memberlist's 512-byte limit, publishes it: the change is
// broadcast promptly, but at most once per MetaPushInterval, later changes
// being coalesced into the next push. Every live peer then acknowledges
// it; one that does not is sent it directly (see meta_sync.go). An
// unchanged result sends nothing. An oversized result is refused with
// ErrMetaTooLarge and nothing changes. Before Start it only sets what
// Start announces. fn must not call back into c.
func (c *Cluster) UpdateMeta(fn func(*Meta)) error {
	changed, err := c.setLocalMeta(fn)
	if err != nil || !changed {
		return err
	}
	c.stateMu.Lock()
	started := c.started
	c.stateMu.Unlock()
	if !started {
		return nil
	}
	select {
	case c.metaKick <- struct{}{}:
	default: // a push is already pending; it will carry this change
	}
	return nil
}

// setLocalMeta applies fn and, when the result differs, stores it and its
// encoding, without broadcasting. It reports whether anything changed.
func (c *Cluster) setLocalMeta(fn func(*Meta)) (bool, error) {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	m := c.meta
	m.Addrs.Proxy = slices.Clone(m.Addrs.Proxy)
	fn(&m)
	m.Name = c.cfg.Name
	m = m.withDefaults()
	if m.Weight < 0 || m.Weight > maxWeight {
		return false, ErrWeight
	}
	enc, err := encodeMeta(m)
	if err != nil {
		return false, err
	}
	if bytes.Equal(enc, *c.metaBytes.Load()) {
		return false, nil
	}
	c.meta = m
	c.metaBytes.Store(&enc)
	return true, nil
}

// announce makes the latest local metadata the one memberlist gossips.
// Call it just before ml.UpdateNode.
func (c *Cluster) announce() {
	b := *c.metaBytes.Load()
	c.announced.Store(&announcement{hash: metaHash(b), bytes: b, at: c.cfg.Clock.Now()})
	select { // the sync loop checks that the peers get it
	case c.syncKick <- struct{}{}:
	default:
	}
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
	c.announce()
	// UpdateNode waits for the broadcast to go out; bound the wait so a
	// lone node (nobody to send to) does not stall later pushes. Waiting
	// also keeps this broadcast from replacing our previous one while it
	// is still queued, which can lose it (hashicorp/memberlist#263).
	// Shutdown does not wait for it: memberlist ends the wait only with
	// the broadcast or the timeout, never on its own shutdown, and a node
	// under load pushes all the time (its in-flight count changes), so
	// the old process of an upgrade held the node's gossip identity, with
	// raft already closed, up to a second longer than it needed: its
	// successor served config writes and raft that much later. The
	// waiting goroutine ends by the timeout.
	done := make(chan error, 1)
	go func() { done <- ml.UpdateNode(c.pushWait) }()
	select {
	case err := <-done:
		if err != nil {
			c.log.Debug("membership: metadata broadcast not confirmed", "err", err)
		}
	case <-c.stop:
	}
}

// pushConfirmWait bounds how long a metadata push waits for memberlist to
// send its broadcast.
const pushConfirmWait = time.Second
