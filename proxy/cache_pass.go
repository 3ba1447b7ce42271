package proxy

import (
	"sync"
	"time"
)

// Hit-for-pass: a key whose response was just found unstorable for a
// reason of the response itself (private, no-store, Set-Cookie, Vary: *,
// no freshness, too large, the ResponseCacheFilter's refusal) is
// remembered for hitForPassTTL. A miss on it then goes to the origin at
// once, without the key's lock: requests for an uncacheable URL no longer
// queue behind each other's fetch one at a time (collapsed forwarding
// only delays them), and on a shared route a node no longer asks the
// key's owner to fetch what it would then throw away and fetch again
// itself (two origin requests for each). It is Varnish's hit-for-pass
// (its builtin VCL keeps such markers for 2 minutes). Reasons that belong
// to the request (its no-store, Authorization) or to a moment (an error
// status, a full store) mark nothing, so collapsing still shields an
// origin that fails. A request that passes and gets a response that may
// be stored drops the marker (a URL that answers some clients privately
// and others publicly is cached again from the next request on); one that
// gets another unstorable response renews it.
const (
	hitForPassTTL = 2 * time.Minute
	hitForPassMax = 1 << 14 // keys remembered; past it the oldest-looking go
)

// passReasons are the reasons not to store that mark their key.
var passReasons = map[string]bool{
	"no-store": true, "private": true, "set-cookie": true, "vary-star": true,
	"no-freshness": true, "must-understand": true, "too_large": true, "filter": true,
}

// passSet holds the hit-for-pass markers of a Server's caching routes.
type passSet struct {
	mu sync.Mutex
	m  map[string]time.Time // key → when its marker expires
}

// mark remembers key until now+hitForPassTTL.
func (p *passSet) mark(key string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = make(map[string]time.Time)
	}
	if _, ok := p.m[key]; !ok && len(p.m) >= hitForPassMax {
		// Full: the expired go, and an eighth of the rest (Go's map
		// order is random), so a flood of new keys costs O(1) a mark.
		drop := len(p.m) / 8
		for k, until := range p.m {
			if !until.After(now) {
				delete(p.m, k)
			} else if drop > 0 {
				delete(p.m, k)
				drop--
			}
		}
	}
	p.m[key] = now.Add(hitForPassTTL)
}

// unmark forgets key's marker.
func (p *passSet) unmark(key string) {
	p.mu.Lock()
	delete(p.m, key)
	p.mu.Unlock()
}

// marked reports whether key's marker is there and unexpired.
func (p *passSet) marked(key string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.m[key]
	if ok && !until.After(now) {
		delete(p.m, key)
		return false
	}
	return ok
}

// passMarked is cacheLock's check: a marked key goes to the origin
// without the lock, and its response is not stored.
func (s *Server[C]) passMarked(sess *Session) bool {
	cs := &sess.cache
	if !s.hitPass.marked(cs.vkey, s.clock.Now()) {
		return false
	}
	cs.st.detail, cs.passed = "hit-for-pass", true
	s.metrics.cache.uncacheable.WithLabelValues("hit-for-pass").Inc()
	return true
}

// notePass updates the marker of a request that held no fill because it
// passed (passMarked) or because the fill it waited for stored nothing,
// from the response it got.
func (s *Server[C]) notePass(sess *Session, resp *ResponseHeader) {
	cs := &sess.cache
	if cs.fill != nil || (!cs.passed && !cs.fillFailed) {
		return
	}
	if reason := s.passReason(sess, resp); reason == "" {
		s.hitPass.unmark(cs.vkey)
	} else {
		s.markPass(sess, reason)
	}
}

// markPass marks the request's key when reason is one of passReasons.
func (s *Server[C]) markPass(sess *Session, reason string) {
	if passReasons[reason] {
		s.hitPass.mark(sess.cache.vkey, s.clock.Now())
	}
}
