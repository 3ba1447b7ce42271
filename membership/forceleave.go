package membership

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

var (
	// ErrMemberAlive is returned by ForceLeave for a member this node sees
	// alive (or for this node itself): force-leave only removes members
	// that are dead or gone; a live one would come straight back.
	ErrMemberAlive = errors.New("membership: member is alive")
	// ErrNoSuchMember is returned by ForceLeave for a name this node does
	// not know.
	ErrNoSuchMember = errors.New("membership: no such member")
)

// msgForceLeave is the first byte of a user message naming a member forced
// out of the cluster (the metadata sync's are syncMsgType).
const msgForceLeave byte = 'F'

// maxNameLen bounds a member name in a force-leave message.
const maxNameLen = 128

// forceLeaveMemory is how long a force-leave is remembered, so that a late
// "dead" report about the member (memberlist gossips dead nodes for a
// while) does not bring it back into the member list. A member that truly
// rejoins (memberlist's join event) clears it at once.
const forceLeaveMemory = 5 * time.Minute

// forceLeaves spreads force-leave intents through gossip and remembers the
// names forced out. memberlist has no force-leave of its own: like serf,
// the intent travels as a user message piggybacked on gossip, and every
// node that applies it passes it on once.
type forceLeaves struct {
	queue memberlist.TransmitLimitedQueue
	nodes atomic.Int32  // cluster size for the retransmit count, set when queueing
	in    chan string   // received names, for the loop
	drops atomic.Uint64 // messages dropped: inbound queue full, or malformed

	mu   sync.Mutex
	gone map[string]time.Time // names forced out, and when
}

func newForceLeaves() *forceLeaves {
	f := &forceLeaves{
		in:   make(chan string, 64), // a burst of force-leaves; more are dropped and counted
		gone: make(map[string]time.Time),
	}
	f.queue.RetransmitMult = 4 // memberlist's default
	f.queue.NumNodes = func() int { return int(f.nodes.Load()) }
	return f
}

// receive is the delegate's NotifyMsg: decode, enqueue, return.
func (f *forceLeaves) receive(b []byte) {
	if len(b) < 2 || b[0] != msgForceLeave || len(b)-1 > maxNameLen {
		f.drops.Add(1)
		return
	}
	select {
	case f.in <- string(b[1:]):
	default:
		f.drops.Add(1)
	}
}

// forceLeaveBroadcast is one queued intent; a newer one for the same name
// replaces it.
type forceLeaveBroadcast struct{ name string }

var _ memberlist.NamedBroadcast = (*forceLeaveBroadcast)(nil)

func (b *forceLeaveBroadcast) Name() string                          { return "force-leave/" + b.name }
func (b *forceLeaveBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *forceLeaveBroadcast) Message() []byte                       { return append([]byte{msgForceLeave}, b.name...) }
func (b *forceLeaveBroadcast) Finished()                             {}

// ForceLeave removes a member that is dead or gone from the member list on
// every node, as Consul's force-leave does: this node drops it at once
// and gossips the intent; each node drops it when it sees the member dead
// too. A member this node sees alive is refused with ErrMemberAlive; an
// unknown name with ErrNoSuchMember. If the member later really rejoins,
// it is a member again.
func (c *Cluster) ForceLeave(name string) error {
	ml, err := c.memberlist()
	if err != nil {
		return err
	}
	if name == c.cfg.Name {
		return fmt.Errorf("%w: %s is this node", ErrMemberAlive, name)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%w: %q", ErrNoSuchMember, name)
	}
	c.mu.RLock()
	m, ok := c.members[name]
	alive := ok && (m.State == Alive || m.State == Suspect)
	c.mu.RUnlock()
	switch {
	case !ok:
		return fmt.Errorf("%w: %q", ErrNoSuchMember, name)
	case alive:
		return fmt.Errorf("%w: %s is %s", ErrMemberAlive, name, m.State)
	}
	c.applyForceLeave(name)
	c.fl.nodes.Store(int32(ml.NumMembers()))
	c.fl.queue.QueueBroadcast(&forceLeaveBroadcast{name: name})
	c.log.Info("membership: member forced out", "member", name, "was", m.State)
	return nil
}

// forceLeaveLoop applies the intents other nodes gossip and forgets old
// ones.
func (c *Cluster) forceLeaveLoop() {
	t := c.cfg.Clock.NewTicker(forceLeaveMemory / 5) // forget at most a fifth late
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case name := <-c.fl.in:
			c.forceLeaveStep(name)
		case <-t.C():
			c.fl.expire(c.cfg.Clock.Now())
		}
	}
}

// forceLeaveStep applies a received intent the first time it arrives: a
// member seen dead or gone is dropped; one still seen alive is dropped when
// this node sees it fail (see forgetForced). The intent is passed on once.
func (c *Cluster) forceLeaveStep(name string) {
	if name == c.cfg.Name {
		return // we are alive; our own gossip says so
	}
	c.fl.mu.Lock()
	_, known := c.fl.gone[name]
	c.fl.mu.Unlock()
	if known {
		return
	}
	c.applyForceLeave(name)
	if ml, err := c.memberlist(); err == nil {
		c.fl.nodes.Store(int32(ml.NumMembers()))
		c.fl.queue.QueueBroadcast(&forceLeaveBroadcast{name: name})
	}
	c.log.Info("membership: member forced out by a peer", "member", name)
}

// applyForceLeave remembers name as forced out and drops it from the
// member list unless this node still sees it alive.
func (c *Cluster) applyForceLeave(name string) {
	c.fl.mu.Lock()
	c.fl.gone[name] = c.cfg.Clock.Now()
	c.fl.mu.Unlock()
	c.dropMember(name, false)
}

// dropMember removes name from the member list (unless it is alive and
// evenAlive is false), rebuilds the ring and tells subscribers it left.
func (c *Cluster) dropMember(name string, evenAlive bool) {
	c.mu.Lock()
	m, ok := c.members[name]
	if !ok || (!evenAlive && (m.State == Alive || m.State == Suspect)) {
		c.mu.Unlock()
		return
	}
	delete(c.members, name)
	cp := *m
	cp.metaRaw = nil
	cp.State, cp.LastChange = Left, c.cfg.Clock.Now()
	c.mu.Unlock()
	r := c.rebuildRing()
	c.log.Info("membership: member dropped after a force-leave", "member", name, "ring", r.Digest())
	c.publish(Event{Type: EventLeave, Member: cp, Ring: r.Version()})
}

// forgetForced is applyEvent's filter for members forced out: a join
// (the member really came back) clears the intent and is applied; a
// failure or leave drops the member instead of recording it. It reports
// whether the event was consumed.
func (c *Cluster) forgetForced(ev rawEvent) bool {
	c.fl.mu.Lock()
	_, gone := c.fl.gone[ev.name]
	if gone && ev.typ == EventJoin {
		delete(c.fl.gone, ev.name)
	}
	c.fl.mu.Unlock()
	if !gone || ev.typ != eventGone {
		return false
	}
	c.dropMember(ev.name, true)
	return true
}

// expire forgets intents older than forceLeaveMemory.
func (f *forceLeaves) expire(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, at := range f.gone {
		if now.Sub(at) > forceLeaveMemory {
			delete(f.gone, name)
		}
	}
}
