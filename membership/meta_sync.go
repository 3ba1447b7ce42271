package membership

import (
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// Metadata acknowledgements (issue 12). memberlist sends a metadata change
// as a gossiped broadcast, a few times, and never again: one lost
// broadcast (hashicorp/memberlist#263 loses some outright) left a peer
// with old metadata until the next periodic push/pull, 30 s away with the
// lan profile. So each node acknowledges every peer metadata it applies,
// with a small user message naming a hash of it, and a node checks every
// MetaSyncInterval that every live peer holds its announced metadata. A
// peer that has not acknowledged it MetaAckTimeout after the broadcast is
// asked (a query it answers with the hash it holds); if its answer names
// older metadata, or it still lags one interval later, it is sent our
// state directly over TCP (a push/pull with that peer alone), after which
// it acknowledges. Later tries back off, doubling up to maxSyncBackoff. A
// change thus reaches a reachable peer within about MetaAckTimeout +
// MetaSyncInterval plus a TCP round trip.
//
// Hashes, not a version number, name the metadata: they add nothing to
// the 512-byte metadata, and compare content, which is what matters. A
// peer is expected to acknowledge once it has sent any sync message (every
// peer acknowledges our metadata when it first learns of us), so peers on
// an older version, which never do, are left to memberlist's push/pull.

// syncMsgType is the first byte of our user messages.
const syncMsgType byte = 'S'

// maxSyncBackoff caps the delay between tries to bring one peer up to date.
const maxSyncBackoff = 30 * time.Second

// Kinds of sync message.
const (
	syncAck   byte = 'a' // "I hold your metadata with Hash"
	syncQuery byte = 'q' // "which of my metadata do you hold?"
)

// syncMsg is one acknowledgement-protocol message.
type syncMsg struct {
	Kind byte   `msgpack:"k"`
	From string `msgpack:"f"` // the sender's node name
	Hash uint64 `msgpack:"h"` // ack: metaHash of what the sender holds for the receiver
}

// metaHash names encoded metadata in acknowledgements.
func metaHash(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func encodeSync(m syncMsg) []byte {
	b, _ := msgpack.Marshal(&m) // three scalars: cannot fail
	return append([]byte{syncMsgType}, b...)
}

func decodeSync(b []byte) (syncMsg, error) {
	var m syncMsg
	if len(b) == 0 || b[0] != syncMsgType {
		return m, fmt.Errorf("membership: unknown user message type")
	}
	if err := checkLengths(b[1:]); err != nil { // before msgpack allocates for a length
		return m, fmt.Errorf("membership: sync message: %w", err)
	}
	if err := msgpack.Unmarshal(b[1:], &m); err != nil {
		return m, fmt.Errorf("membership: sync message: %w", err)
	}
	if (m.Kind != syncAck && m.Kind != syncQuery) || m.From == "" {
		return m, fmt.Errorf("membership: sync message: bad kind %q or no sender", m.Kind)
	}
	return m, nil
}

// peerSync is what this node knows of one live peer's copy of its
// metadata. The sync loop owns it.
type peerSync struct {
	addr     string
	speaks   bool      // it sent a sync message: it acknowledges
	held     uint64    // hash of the metadata it last said it holds
	since    time.Time // first seen live
	target   uint64    // the announced hash that attempts and next count for
	attempts int
	next     time.Time
}

// syncTarget is a peer to bring up to date, and how.
type syncTarget struct {
	name, addr string
	push       bool // push/pull; otherwise only ask
}

// syncLoop handles acknowledgement messages and checks, every
// MetaSyncInterval, that every live peer holds the announced metadata.
// A check that finds every peer up to date stops the ticker until there
// is something to check again: new metadata (announce) or a sync message
// from a peer (a new peer speaking the protocol, an acknowledgement). An
// idle cluster's nodes do not wake every MetaSyncInterval for nothing.
func (c *Cluster) syncLoop() {
	t := c.cfg.Clock.NewTicker(c.cfg.MetaSyncInterval)
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	wake := func() {
		if t == nil {
			t = c.cfg.Clock.NewTicker(c.cfg.MetaSyncInterval)
		}
	}
	peers := make(map[string]*peerSync)
	for {
		var tick <-chan time.Time
		if t != nil {
			tick = t.C()
		}
		select {
		case <-c.stop:
			return
		case <-c.syncKick:
			wake()
		case b := <-c.inbox:
			c.handleSync(peers, b, c.cfg.Clock.Now())
			wake()
		case <-tick:
			for _, tg := range c.syncStep(peers, c.cfg.Clock.Now()) {
				c.bringUpToDate(tg)
			}
			if c.leaving.Load() || len(*c.pending.Load()) == 0 {
				t.Stop()
				t = nil
			}
		}
	}
}

// handleSync records an acknowledgement or answers a query. Messages from
// names not in the member table are ignored.
func (c *Cluster) handleSync(peers map[string]*peerSync, b []byte, now time.Time) {
	m, err := decodeSync(b)
	if err != nil {
		c.msgErrs.Add(1)
		c.log.Debug("membership: user message dropped", "err", err)
		return
	}
	c.mu.RLock()
	mb := c.members[m.From]
	var held uint64
	var addr string
	if mb != nil {
		held, addr = metaHash(mb.metaRaw), mb.Addr
	}
	c.mu.RUnlock()
	if addr == "" || m.From == c.cfg.Name {
		return
	}
	p := peers[m.From]
	if p == nil {
		p = &peerSync{since: now}
		peers[m.From] = p
	}
	first := !p.speaks
	p.addr, p.speaks = addr, true
	// A query is answered. So is the first acknowledgement from a peer:
	// when two nodes meet, each acknowledges the other's metadata as soon
	// as it learns of it, and the one that learns first sends its
	// acknowledgement before the other has it in its member table, which
	// drops it (above). The answer to the other's acknowledgement, which
	// comes next, tells it this peer speaks the protocol; without it the
	// peer would be left to memberlist's push/pull for good. Each side
	// answers at most once per peer, so this cannot loop.
	if m.Kind == syncQuery || first {
		c.sendSync(m.From, addr, syncMsg{Kind: syncAck, From: c.cfg.Name, Hash: held})
	}
	if m.Kind == syncQuery {
		return
	}
	p.held = m.Hash
	// The answer to our query names older metadata: the broadcast was
	// lost; push now rather than at the next check.
	if ann := c.announced.Load(); p.target == ann.hash && p.held != ann.hash && p.attempts == 1 && !c.leaving.Load() {
		c.bringUpToDate(p.try(m.From, now, c.cfg.MetaSyncInterval))
	}
}

// syncStep updates peers from the member table and returns the peers to
// ask or to push to now.
func (c *Cluster) syncStep(peers map[string]*peerSync, now time.Time) []syncTarget {
	if c.leaving.Load() {
		return nil // a push/pull now would announce us again
	}
	ann := c.announced.Load()
	live := make(map[string]string)
	c.mu.RLock()
	for name, m := range c.members {
		if name != c.cfg.Name && m.State == Alive {
			live[name] = m.Addr
		}
	}
	c.mu.RUnlock()
	for name := range peers {
		if _, ok := live[name]; !ok {
			delete(peers, name)
		}
	}
	var out []syncTarget
	var pending []string
	for name, addr := range live {
		p := peers[name]
		if p == nil {
			p = &peerSync{since: now}
			peers[name] = p
		}
		p.addr = addr
		if !p.speaks || p.held == ann.hash {
			continue
		}
		pending = append(pending, name)
		if p.target != ann.hash {
			p.target, p.attempts, p.next = ann.hash, 0, time.Time{}
		}
		due := later(ann.at, p.since).Add(c.cfg.MetaAckTimeout)
		if now.Before(due) || now.Before(p.next) {
			continue
		}
		out = append(out, p.try(name, now, c.cfg.MetaSyncInterval))
	}
	slices.Sort(pending)
	c.pending.Store(&pending)
	return out
}

// try returns the next try to bring the peer up to date (a query first,
// push/pulls after) and schedules the one after it.
func (p *peerSync) try(name string, now time.Time, interval time.Duration) syncTarget {
	tg := syncTarget{name: name, addr: p.addr, push: p.attempts > 0}
	p.next = now.Add(backoff(interval, maxSyncBackoff, p.attempts))
	p.attempts++
	return tg
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// bringUpToDate asks a lagging peer what it holds, or hands it to the
// push/pull loop; when that queue is full the push waits for a later try.
func (c *Cluster) bringUpToDate(tg syncTarget) {
	if !tg.push {
		c.queries.Add(1)
		c.sendSync(tg.name, tg.addr, syncMsg{Kind: syncQuery, From: c.cfg.Name})
		return
	}
	select {
	case c.pushPulls <- tg:
	default:
	}
}

// pushPullLoop sends our state directly to lagging peers, one at a time:
// a push/pull blocks for up to memberlist's TCP timeout.
func (c *Cluster) pushPullLoop() {
	for {
		select {
		case <-c.stop:
			return
		case tg := <-c.pushPulls:
			c.pushPullStep(tg)
		}
	}
}

// pushPullStep exchanges full state with one peer (memberlist's Join with
// a known member is a push/pull with it), then asks it what it holds.
func (c *Cluster) pushPullStep(tg syncTarget) {
	ml, err := c.memberlist()
	if err != nil {
		return
	}
	c.resends.Add(1)
	c.log.Info("membership: peer lacks our latest metadata (a gossip broadcast was lost); sending it directly", "peer", tg.name)
	if _, err := ml.Join([]string{tg.addr}); err != nil {
		c.log.Warn("membership: sending metadata directly failed", "peer", tg.name, "err", err)
		return
	}
	c.sendSync(tg.name, tg.addr, syncMsg{Kind: syncQuery, From: c.cfg.Name})
}

// sendSync sends one sync message to a peer, best effort (UDP).
func (c *Cluster) sendSync(name, addr string, m syncMsg) {
	if c.sentSync != nil {
		c.sentSync(name, m)
	}
	ml, err := c.memberlist()
	if err != nil {
		return
	}
	if err := ml.SendToAddress(memberlist.Address{Addr: addr, Name: name}, encodeSync(m)); err != nil {
		c.log.Debug("membership: sync message not sent", "peer", name, "err", err)
	}
}

// pendingPeers returns the live peers that have not acknowledged this
// node's latest announced metadata, as of the last check.
func (c *Cluster) pendingPeers() []string {
	if p := c.pending.Load(); p != nil {
		return *p
	}
	return nil
}
