package proxy

import (
	"errors"
	"fmt"
	"time"
)

// ConnLimit caps the connections a Server has in use to one peer, as
// nginx's max_conns and queue do. A connection is in use from the moment
// a request takes it (pooled or dialed) until the response has been read
// from it to its end, or it failed, or, for an upgraded tunnel, until the
// tunnel closes; idle pooled connections do not count (Pool.MaxIdlePerPeer
// bounds them). Over HTTP/2 it caps the streams in flight to the peer,
// which bounds the connections the transport needs for them to about Max
// divided by the peer's stream limit.
//
// The count is kept per peer identity (address, protocol and TLS settings,
// as pooled connections are) and shared by every group and table that
// names the peer; each request measures it against its own Peer's Max,
// and a waiting request against its group's Max in the table swapped in
// since. A swap that drops the peer keeps its count while requests to it
// are in flight, so that a table naming it again counts them (see
// connSlots).
//
// A request whose peer is at Max fails over at once to another peer when
// another attempt is allowed (Retries left, the request replayable,
// nothing sent to the client) and the App's HasOtherPeer says a retry
// would get another peer: the next attempt's UpstreamPeer sees the peer
// in Session.Tried and picks another (Router does). On its last allowed
// attempt, on a peer it tried already, or with no other peer to go to
// (the group's only one, or its only healthy one), it waits in the peer's
// queue, first come first served, for up to QueueTimeout; when the queue
// is full or the wait ends without a connection the attempt fails with
// KindPeerBusy (503), which counts neither against the peer's health nor
// as an upstream error.
type ConnLimit struct {
	// Max caps the connections in use to the peer (default 0: no cap).
	Max int
	// Queue is how many requests may wait for one of the peer's
	// connections when Max are in use; -1 means none wait (default 0:
	// as many as Max).
	Queue int
	// QueueTimeout is how long a request waits in the queue (default 1s:
	// a waiting request holds its client, and a 503 the client can retry
	// beats a stall; nginx's queue waits 60s).
	QueueTimeout time.Duration
}

// DefaultQueueTimeout is ConnLimit.QueueTimeout's default.
const DefaultQueueTimeout = time.Second

// MaxQueueTimeout bounds ConnLimit.QueueTimeout: a client waits this long
// at most for a connection to a busy peer.
const MaxQueueTimeout = time.Minute

// Validate reports every invalid field of l, joined, each a *FieldError.
func (l ConnLimit) Validate() error {
	var f fieldErrs
	if l.Max < 0 {
		f.add("Max", "%d cannot be negative (0: no cap)", l.Max)
	}
	if l.Queue < -1 {
		f.add("Queue", "%d is not -1 (none wait), 0 (as many as Max) or a count", l.Queue)
	}
	if l.QueueTimeout < 0 || l.QueueTimeout > MaxQueueTimeout {
		f.add("QueueTimeout", "%s is not between 0 (default %s) and %s", l.QueueTimeout, DefaultQueueTimeout, MaxQueueTimeout)
	}
	if l.Max == 0 && l.Queue != 0 {
		f.add("Queue", "needs a connection cap (Max; max_conns in a cluster config): without one nothing waits")
	}
	if l.Max == 0 && l.QueueTimeout != 0 {
		f.add("QueueTimeout", "needs a connection cap (Max; max_conns in a cluster config): without one nothing waits")
	}
	return errors.Join(f...)
}

// queue returns how many may wait.
func (l ConnLimit) queue() int {
	switch {
	case l.Queue < 0:
		return 0
	case l.Queue == 0:
		return l.Max
	}
	return l.Queue
}

func (l ConnLimit) timeout() time.Duration {
	if l.QueueTimeout > 0 {
		return l.QueueTimeout
	}
	return DefaultQueueTimeout
}

// errPeerBusy is the cause of a KindPeerBusy error.
var errPeerBusy = errors.New("peer at max_conns")

// acquireSlot takes one of peer's connection slots for an attempt, when
// its ConnLimit caps them; nil (no slot to free) when it does not. See
// ConnLimit for when it fails over, waits or fails.
func (s *Server[C]) acquireSlot(sess *Session, peer *Peer) (*peerSlots, error) {
	lim := peer.Conns
	if lim.Max <= 0 {
		return nil, nil
	}
	key := peer.poolKey()
	if ps, ok := s.slots.tryTake(key, lim.Max); ok {
		return ps, nil
	}
	if !triedKey(sess, key) && sess.body != nil && canRetry(sess, sess.body) && s.otherPeer(sess, peer) {
		s.slots.skipped.Inc()
		return nil, busyError(peer, lim, "another peer is tried")
	}
	ps, w, taken := s.slots.enqueue(key, peer.Group, lim.Max, lim.queue())
	if taken {
		return ps, nil
	}
	if w == nil {
		s.slots.refused.Inc()
		return nil, busyError(peer, lim, "queue full")
	}
	t := time.NewTimer(lim.timeout())
	defer t.Stop()
	select {
	case <-w.ready:
		s.slots.waited.Inc()
		return ps, nil
	case <-t.C:
	case <-sess.ctx.Done():
	}
	if ps.leave(w) {
		s.slots.waited.Inc()
		return ps, nil
	}
	if sess.ctx.Err() != nil {
		return nil, newError(KindClientCanceled, Downstream, sess.ctx.Err())
	}
	s.slots.refused.Inc()
	return nil, busyError(peer, lim, "waited "+lim.timeout().String())
}

// otherPeer reports whether a retry of sess could go to a peer of another
// identity than peer (see HasOtherPeer); without the phase it assumes so.
func (s *Server[C]) otherPeer(sess *Session, peer *Peer) bool {
	p := s.ph.otherPeer
	return p == nil || p.HasOtherPeer(sess, peer, sess.uctx.(C))
}

// triedKey reports whether an earlier attempt of sess went to the peer
// identity key.
func triedKey(sess *Session, key string) bool {
	for _, p := range sess.Tried {
		if p.poolKey() == key {
			return true
		}
	}
	return false
}

func busyError(peer *Peer, lim ConnLimit, why string) *Error {
	return &Error{Kind: KindPeerBusy, Source: Internal, Retry: true,
		Err: fmt.Errorf("%w: %s has %d in use (%s)", errPeerBusy, peer.Addr, lim.Max, why)}
}
