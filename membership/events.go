package membership

import (
	"bytes"
	"time"
)

// eventLoop owns the member table and the ring: it applies queued callbacks
// and periodic refreshes, rebuilding the ring after each.
func (c *Cluster) eventLoop() {
	// Forget long-gone members at most a minute late, or a tenth of
	// ReapAfter when that is shorter.
	t := c.cfg.Clock.NewTicker(min(time.Minute, max(c.cfg.ReapAfter/10, time.Millisecond)))
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.queue.ready:
			for _, ev := range c.queue.take() {
				c.applyEvent(ev)
			}
		case <-t.C():
			c.expire()
		}
	}
}

// applyEvent records one callback, rebuilds the ring and notifies
// subscribers.
func (c *Cluster) applyEvent(ev rawEvent) {
	if c.forgetForced(ev) {
		return
	}
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	m := c.members[ev.name]
	if m == nil {
		m = &Member{Name: ev.name}
		c.members[ev.name] = m
	}
	m.Addr = ev.addr
	wasDraining := m.metaOK && m.Meta.State == StateDraining
	changed := c.setMeta(m, ev.meta)
	state := Alive
	if ev.typ == eventGone {
		// Leave announces draining first (see Cluster.Leave); a node that
		// vanished without doing so failed.
		ev.typ, state = EventFail, Dead
		if wasDraining || (m.metaOK && m.Meta.State == StateDraining) {
			ev.typ, state = EventLeave, Left
		}
	}
	if m.State != state {
		m.State, m.LastChange = state, now
	}
	cp := *m
	cp.metaRaw = nil
	c.mu.Unlock()
	if state == Alive && ev.name != c.cfg.Name {
		c.kickJoin()
	}
	if changed && state == Alive && ev.name != c.cfg.Name {
		c.sendSync(ev.name, ev.addr, syncMsg{Kind: syncAck, From: c.cfg.Name, Hash: metaHash(ev.meta)})
	}
	r := c.rebuildRing()
	c.log.Debug("membership: event", "type", ev.typ.String(), "member", ev.name, "state", state, "ring", r.Digest())
	c.publish(Event{Type: ev.typ, Member: cp, Ring: r.Version()})
}

// setMeta decodes raw into m when it changed, and reports whether it did.
// Callers hold c.mu.
func (c *Cluster) setMeta(m *Member, raw []byte) bool {
	if m.metaRaw != nil && bytes.Equal(m.metaRaw, raw) {
		return false
	}
	meta, err := decodeMeta(m.Name, raw)
	if err != nil {
		c.metaErrs.Add(1)
		c.log.Warn("membership: member kept off the ring", "member", m.Name, "err", err)
	}
	m.Meta, m.metaRaw, m.metaOK = meta, bytes.Clone(raw), err == nil
	return true
}

// expire forgets members dead or left for longer than ReapAfter. The
// table is fed only by callbacks: memberlist's Members() hands out pointers
// it keeps mutating, which the race detector flags.
func (c *Cluster) expire() {
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, m := range c.members {
		if (m.State == Dead || m.State == Left) && now.Sub(m.LastChange) >= c.cfg.ReapAfter {
			delete(c.members, name)
			c.log.Info("membership: forgot a member gone for longer than ReapAfter", "member", name, "state", m.State, "since", m.LastChange, "reap_after", c.cfg.ReapAfter)
		}
	}
}

// rebuildRing publishes a new Ring if the set of ring members, their
// weights or their addresses changed, and returns the current one.
func (c *Cluster) rebuildRing() *Ring {
	var ms []RingMember
	c.mu.RLock()
	for _, m := range c.members {
		if onRing(m) {
			ms = append(ms, RingMember{Name: m.Name, Weight: min(max(m.Meta.Weight, 1), maxWeight), Addr: m.Meta.Addrs.Cluster})
		}
	}
	c.mu.RUnlock()
	old := c.ring.Load()
	r := NewRingOf(old.Version()+1, c.cfg.Name, ms)
	if r.Digest() == old.Digest() {
		return old
	}
	c.ring.Store(r)
	c.log.Info("membership: ring changed", "version", r.Version(), "digest", r.Digest(), "members", r.Len())
	return r
}

// onRing says whether m can own keys: it is alive (or suspect), its
// metadata decoded, it says it is ready (not starting, not draining), and
// it gossips the cluster RPC address other nodes call it at. A member
// that cannot answer a call must not own keys, or every call for them
// fails until failure detection catches up.
func onRing(m *Member) bool {
	return (m.State == Alive || m.State == Suspect) && m.metaOK &&
		m.Meta.State == StateReady && m.Meta.Addrs.Cluster != ""
}
