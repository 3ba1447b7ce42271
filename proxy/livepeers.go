package proxy

// PeerWatcher is an optional App capability, found once by New: an App
// whose peers come from routing tables that are swapped (RouterApp) reports
// the peers of each table it installs. The Server then keeps pooled
// HTTP/1.1 connections and HTTP/2 transports only for those peers: at a
// swap it closes the idle connections of peers that left, and requests of
// an older table that are still in flight to such a peer finish on their
// connection, which is closed (not pooled) when they end. A peer's count
// of connections in use (ConnLimit) is forgotten once they have ended.
//
// Absent: every peer is kept; idle HTTP/1.1 connections still close after
// Pool.IdleTimeout, and an HTTP/2 transport is kept per peer identity for
// the Server's life.
type PeerWatcher interface {
	// WatchPeers calls f with the peers of the live table now, and with
	// those of each new table before it is installed, until stop is
	// called. f must not call back into the watcher.
	WatchPeers(f func(live []*Peer)) (stop func())
}

// peerKeys is a set of peer identities (Peer.poolKey); a nil set holds
// every key. Once built it is only read.
type peerKeys map[string]struct{}

func (k peerKeys) has(key string) bool {
	if k == nil {
		return true
	}
	_, ok := k[key]
	return ok
}

// retainPeers is the Server's PeerWatcher callback: it frees the pooled
// state of every peer not in live. Connection slots (ConnLimit) outlive
// it while in use: see connSlots.
func (s *Server[C]) retainPeers(live []*Peer) {
	keys := make(peerKeys, len(live))
	for _, p := range live {
		keys[p.poolKey()] = struct{}{}
	}
	s.pool.retain(keys)
	s.h2up.retain(keys)
	s.slots.retain(live)
}

// retain keeps idle connections only for keys in live, closing the others,
// and from now on pools only those.
func (p *pool) retain(live peerKeys) {
	var dead []*upConn
	p.mu.Lock()
	p.live = live
	for k, list := range p.idle {
		if !live.has(k) {
			dead = append(dead, list...)
			delete(p.idle, k)
		}
	}
	p.mu.Unlock()
	for _, c := range dead {
		c.close()
	}
}

// idleKeys returns the number of peer keys the pool holds an entry for.
func (p *pool) idleKeys() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
