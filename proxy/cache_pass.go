package proxy

import (
	"hash/maphash"
	"sync"
	"time"
)

// Hit-for-pass: a key whose response was just found unstorable for a
// reason of the response itself (private, no-store, Set-Cookie, Vary: *
// or X-Forwarded-For, no freshness, too large, the ResponseCacheFilter's
// refusal) is remembered for hitForPassTTL. A miss on it then goes to the origin at
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
// gets another unstorable response renews it. A marker the
// ResponseCacheFilter set ("filter") stays until it expires: a passed
// response does not go through the filter; so does one for a size
// ("too_large"), which a passed response can't be judged on again when
// the size was the store's cap or learned mid-body. A shared route's owner says
// why its fill stored nothing (cache.NotStorable, over the wire): the
// node reports that reason in Cache-Status and marks the key with it.
const (
	hitForPassTTL = 2 * time.Minute
	hitForPassMax = 1 << 14 // keys remembered; past it the oldest-looking go
)

// passReasons are the reasons not to store that mark their key.
var passReasons = map[string]bool{
	"no-store": true, "private": true, "set-cookie": true, "vary-star": true, "vary-client": true, "connection-named": true,
	"no-freshness": true, "must-understand": true, "too_large": true, "filter": true,
}

// passSet holds the hit-for-pass markers of a Server's caching routes.
//
// A marker is kept under a hash of its key (seeded per process), not the
// key: a key holds the request's URI, up to the head limit, so 16,384 keys
// could hold a GiB whatever the cache's memory cap. Two keys that share a
// hash share a marker, which only sends a request to the origin uncached.
type passSet struct {
	mu   sync.Mutex
	seed maphash.Seed
	m    map[uint64]passMark
}

func (p *passSet) hash(key string) uint64 { return maphash.String(p.seed, key) }

// passMark is a key's marker: when it expires, and the reason that set it.
type passMark struct {
	until  time.Time
	reason string
}

// mark remembers key, for reason, until now+hitForPassTTL.
func (p *passSet) mark(key, reason string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.seed, p.m = maphash.MakeSeed(), make(map[uint64]passMark)
	}
	h := p.hash(key)
	if _, ok := p.m[h]; !ok && len(p.m) >= hitForPassMax {
		// Full: the expired go, and an eighth of the rest (Go's map
		// order is random), so a flood of new keys costs O(1) a mark.
		drop := len(p.m) / 8
		for k, pm := range p.m {
			if !pm.until.After(now) {
				delete(p.m, k)
			} else if drop > 0 {
				delete(p.m, k)
				drop--
			}
		}
	}
	p.m[h] = passMark{until: now.Add(hitForPassTTL), reason: reason}
}

// unmark forgets key's marker.
func (p *passSet) unmark(key string) {
	p.mu.Lock()
	if p.m != nil {
		delete(p.m, p.hash(key))
	}
	p.mu.Unlock()
}

// marked returns the reason of key's marker, "" when there is none or
// it expired.
func (p *passSet) marked(key string, now time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		return ""
	}
	h := p.hash(key)
	pm, ok := p.m[h]
	if ok && !pm.until.After(now) {
		delete(p.m, h)
		return ""
	}
	return pm.reason
}

// passMarked is cacheLock's check: a marked key goes to the origin
// without the lock, and its response is not stored.
func (s *Server[C]) passMarked(sess *Session) bool {
	cs := &sess.cache
	reason := s.hitPass.marked(cs.vkey, s.clock.Now())
	if reason == "" {
		return false
	}
	cs.st.detail, cs.passed, cs.passedFor = "hit-for-pass", true, reason
	s.metrics.cache.uncacheable.WithLabelValues("hit-for-pass").Inc()
	return true
}

// notePass updates the marker of a request that held no fill because it
// passed (passMarked) or because the fill it waited for stored nothing,
// from the response it got. When that fill said why (a shared route's
// owner ran the whole decision, ResponseCacheFilter included, which
// passReason cannot), its reason stands for this request.
func (s *Server[C]) notePass(sess *Session, resp *ResponseHeader) {
	cs := &sess.cache
	if cs.fill != nil || (!cs.passed && !cs.fillFailed) {
		return
	}
	reason := cs.fillReason
	if !passReasons[reason] {
		reason = s.passReason(sess, resp)
	}
	switch {
	case reason == "" && (cs.passedFor == "filter" || cs.passedFor == "too_large"):
		// The ResponseCacheFilter's refusal (here, or at a shared
		// route's owner) is not judged again on a passed response, nor
		// a size over the store's own cap or learned mid-body (passReason
		// sees only the route's cap and a declared length): the marker
		// stands until it expires.
	case reason == "":
		s.hitPass.unmark(cs.vkey)
	default:
		s.markPass(sess, reason)
	}
}

// markPass marks the request's key when reason is one of passReasons.
func (s *Server[C]) markPass(sess *Session, reason string) {
	if passReasons[reason] {
		s.hitPass.mark(sess.cache.vkey, reason, s.clock.Now())
	}
}
