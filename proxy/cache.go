package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/internal/cginame"
	"github.com/pingora-go/pingora-go/proxy/cache"
)

// cacheState is a request's way through the cache.
type cacheState struct {
	cfg     *CacheConfig // nil: the request does not use the cache
	store   cache.Store
	key     string          // the primary key
	vkey    string          // the object's key: a variant's under an index, else key
	index   *cache.Variants // the Vary index found under key
	rq      cache.Directives
	stale   cache.Object // the stored response being revalidated
	fill    cache.Fill   // the lock this request holds, until the fill ends
	reqTime time.Time    // when the upstream request was sent (§4.2.3)
	canFill bool         // a GET without Range, no-store or a body: its response may fill
	storing bool         // the fill started: the body is teed into it
	// clientDone: the client's response ended before the upstream body
	// (a 304 answered from the response head); the body only fills.
	clientDone bool
	invalidate bool // an unsafe method: invalidate on success (§4.4)
	refused    bool // CacheHitFilter refused the stored response: no recheck
	// refetch: the origin answered the revalidation of stale with a 304
	// for another representation (cache.Selects): the request is sent
	// again without validators, and stale stays for stale-if-error.
	refetch bool
	// hopCacheField: the response's Connection named a field the cache
	// decides by (connectionNamesCacheField), removed before it decides.
	hopCacheField bool
	// fillFailed: the fill this request waited for (another node's, on
	// a shared route) stored nothing; it goes to the origin uncached,
	// and marks the key when the answer is unstorable (hit-for-pass).
	// fillReason is why, when the fill said (cache.NotStorable; a shared
	// route's owner sends it).
	fillFailed bool
	fillReason string
	passed     bool   // a hit-for-pass marker sent it to the origin without the lock
	passedFor  string // the reason of that marker
	result     string
	st         cacheStatus
	// req is the request as the store sees it, carried by ctx (see
	// cache.WithRequest); ctx is nil until the key is known.
	req cache.Request
	ctx context.Context
}

// storeCtx is the context of the request's Store calls: it carries the
// request (cache.RequestFrom) once the key is known.
func (cs *cacheState) storeCtx(sess *Session) context.Context {
	if cs.ctx != nil {
		return cs.ctx
	}
	return sess.ctx
}

// varyIDs names Vary index generations: a random prefix per server and a
// counter, unique across the nodes that may share a store.
type varyIDs struct {
	prefix string
	seq    atomic.Uint64
}

func (v *varyIDs) next() string {
	return v.prefix + strconv.FormatUint(v.seq.Add(1), 36)
}

// initCache sets the cache's defaults: the store, the clock, the
// background runner.
func (s *Server[C]) initCache(cfg Config) error {
	s.cacheStore, s.clock = cfg.CacheStore, cfg.Clock
	if s.clock == nil {
		s.clock = clock.Real{}
	}
	if s.cacheStore == nil {
		m, err := cache.NewMemory(cache.MemoryConfig{})
		if err != nil {
			return err
		}
		s.cacheStore = m
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	s.varyIDs.prefix = hex.EncodeToString(b[:]) + "."
	s.bg = newBackground()
	return nil
}

// cacheRequest is the cache's part of a request before any upstream: it
// runs RequestCacheFilter, then looks the request up. done reports that
// the request was answered (err is that answer's error); otherwise it
// goes to the origin, maybe holding the key's fill.
func (s *Server[C]) cacheRequest(sess *Session, ctx C) (done bool, err error) {
	if p := s.ph.reqCache; p != nil {
		if err := p.RequestCacheFilter(sess, ctx); err != nil {
			return true, err
		}
	}
	cs := &sess.cache
	if sess.Cache == nil {
		return false, nil
	}
	cs.cfg = sess.Cache
	if cs.store == nil { // a fill for another party brings its own store
		cs.store = sess.Cache.Store
	}
	if cs.store == nil {
		cs.store = s.cacheStore
	}
	cs.rq = cache.ParseRequest(sess.Req.Header)
	if sess.Background { // the fill and the stale response came with it
		cs.result, cs.st.fwd = cacheMiss, "stale"
		if cs.stale == nil {
			cs.st.fwd = "miss" // a fill for another party (FillCache)
		}
		return false, nil
	}
	if !s.cacheEligible(sess) {
		return false, nil
	}
	key, err := s.cacheKey(sess, ctx)
	if err != nil {
		return true, err
	}
	cs.key, cs.vkey = key, key
	r := sess.Req
	cs.req = cache.Request{Method: r.Method, Scheme: sess.scheme(), Host: r.Host, URI: r.URI, Header: r.Header,
		ClientIP: sess.ClientIP, ForwardedIP: sess.ForwardedIP}
	cs.ctx = cache.WithRequest(sess.ctx, &cs.req)
	cs.canFill = sess.Req.Method == http.MethodGet && len(sess.Req.Header["Range"]) == 0 && !cs.rq.NoStore
	if cs.canFill && sess.ds.contentLength() != 0 {
		// A GET's body is in no key, yet the origin may answer from it:
		// one client's "fat GET" would set everyone's response. It is
		// still answered from what is stored.
		cs.canFill, cs.st.detail = false, "request-body"
	}
	if cs.canFill && hasOverrideField(sess.Req.Header) {
		cs.canFill, cs.st.detail = false, "request-override" // the same, for a URL or method the origin may take from a field
	}
	obj, err := s.cacheFind(sess)
	if err != nil {
		s.errLog.Warn("cache lookup failed", "route", sess.Route, "err", err)
		cs.result, cs.st.fwd, cs.st.detail = cacheBypass, "bypass", "store-error"
		return false, nil
	}
	if obj != nil && s.ph.cacheHit != nil {
		miss, err := s.ph.cacheHit.CacheHitFilter(sess, obj.Meta(), ctx)
		if err != nil {
			return true, err
		}
		if miss {
			obj, cs.refused = nil, true
		}
	}
	if obj != nil {
		return s.cacheFound(sess, ctx, obj)
	}
	return s.cacheMiss(sess, ctx)
}

// overrideFields are request fields that frameworks read as the request's
// real URL or method: X-Original-URL and X-Rewrite-URL (IIS URL rewrite,
// Symfony, Zend), X-HTTP-Method-Override and its other spellings (Rails,
// Express, ASP.NET Web API, ...). They reach the origin and are in no
// key: an origin that honours one answers another page or method under
// this URL's key.
var overrideFields = []string{"X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

func hasOverrideField(h map[string][]string) bool {
	for k, v := range h {
		if len(v) > 0 && isOverrideField(k) {
			return true
		}
	}
	return false
}

// isOverrideField reports whether field name k is one of overrideFields
// in any case and with '_' for '-': a CGI-style origin (PHP's Symfony and
// Zend) reads "X_Original_URL" as HTTP_X_ORIGINAL_URL, as it reads
// X-Original-URL.
func isOverrideField(k string) bool {
	for _, f := range overrideFields {
		if len(k) == len(f) && cginame.Same(k, f) {
			return true
		}
	}
	return false
}

// cacheEligible reports whether the request may be answered from the
// cache; an unsafe method is marked for invalidation instead (§4.4).
func (s *Server[C]) cacheEligible(sess *Session) bool {
	cs := &sess.cache
	cs.result, cs.st.fwd = cacheBypass, "bypass"
	switch m := sess.Req.Method; {
	case m == http.MethodGet || m == http.MethodHead:
	case m == http.MethodOptions || m == http.MethodTrace:
		cs.st.fwd = "method"
		return false
	default:
		cs.st.fwd, cs.invalidate = "method", true
		return false
	}
	switch {
	case sess.ds.upgrade() != "":
		cs.st.detail = "upgrade"
		return false
	case cache.IsMultiRange(sess.Req.Header):
		cs.st.detail = "multi-range" // the origin answers those
		return false
	}
	return true
}

func (s *Server[C]) cacheKey(sess *Session, ctx C) (string, error) {
	if p := s.ph.cacheKey; p != nil {
		return p.CacheKey(sess, ctx)
	}
	return DefaultCacheKey(sess), nil
}

// cacheFind looks the request up: the object under its key, or under the
// variant key its Vary fields select when the key holds an index (§4.1).
// It is traced as one cache lookup (SpanCacheLookup).
func (s *Server[C]) cacheFind(sess *Session) (cache.Object, error) {
	ctx, span := s.startSpan(sess, SpanCacheLookup, nil)
	sess.openSpan = span
	o, err := cacheFindIn(ctx, sess)
	sess.openSpan = nil
	endSpan(span, sess, SpanEnd{Found: o != nil, Err: err})
	return o, err
}

func cacheFindIn(ctx context.Context, sess *Session) (cache.Object, error) {
	cs := &sess.cache
	switch {
	case ctx == sess.ctx: // no span: the store context as is
		ctx = cs.storeCtx(sess)
	case cs.ctx != nil: // the span's context, with the request
		ctx = cache.WithRequest(ctx, &cs.req)
	}
	o, err := cs.store.Lookup(ctx, cs.key)
	if err != nil || o == nil {
		return o, err
	}
	if v := o.Meta().Variants; v != nil {
		cs.index = v
		cs.vkey = cache.VariantKey(cs.key, v, sess.Req.Header)
		return cs.store.Lookup(ctx, cs.vkey)
	}
	return o, nil
}

// cacheFound decides what a stored response does for the request: served
// fresh, served stale as the request or stale-while-revalidate allow, or
// revalidated under the key's lock.
func (s *Server[C]) cacheFound(sess *Session, ctx C, obj cache.Object) (bool, error) {
	cs := &sess.cache
	meta := obj.Meta()
	v := cache.Check(meta, cs.rq, s.clock.Now())
	switch v.Use {
	case cache.UseFresh:
		return s.serveStored(sess, ctx, obj, cacheHit, "")
	case cache.UseStale:
		return s.serveStored(sess, ctx, obj, cacheStale, "max-stale")
	}
	if cs.rq.OnlyIfCached {
		return true, s.onlyIfCached(sess)
	}
	cs.st.fwd = "stale"
	if v.TTL > 0 && !meta.NoCache {
		cs.st.fwd = "request" // fresh, but the request's directives refused it
	}
	if !cs.rq.NoCache && meta.ServeStaleWhileRevalidating(v) {
		f, other, _ := cs.store.Lock(cs.storeCtx(sess), cs.vkey, 0)
		if f != nil {
			// A refresh that ended between the lookup and the lock
			// stored what this request needs (see cacheLock): served
			// from it, with no second refresh.
			if o := s.storedMeanwhile(sess); o != nil && o.Meta().Variants == nil {
				f.Abort(errStoredMeanwhile)
				cs.st.fwd = "" // a hit: nothing went to the origin for it
				return s.serveStored(sess, ctx, o, cacheHit, "")
			}
		}
		switch {
		case other != nil: // a refresh already streams its new response
			return s.serveStored(sess, ctx, other, cacheCollapsed, "")
		case f != nil && !s.refreshLater(sess, f, obj):
			f.Abort(nil)
		}
		return s.serveStored(sess, ctx, obj, cacheStale, "stale-while-revalidate")
	}
	cs.result, cs.stale = cacheMiss, obj
	if !cs.canFill {
		return false, nil
	}
	return s.cacheLock(sess, ctx)
}

// cacheMiss handles a request nothing usable is stored for.
func (s *Server[C]) cacheMiss(sess *Session, ctx C) (bool, error) {
	cs := &sess.cache
	cs.result, cs.st.fwd = cacheMiss, "miss"
	if cs.index != nil {
		cs.st.fwd = "vary-miss"
	}
	if cs.rq.OnlyIfCached {
		return true, s.onlyIfCached(sess)
	}
	if !cs.canFill {
		return false, nil
	}
	return s.cacheLock(sess, ctx)
}

// cacheLock takes the key's fill, or waits on the fill under way and is
// served from it (collapsed forwarding). A wait that ends without an
// object sends the request to the origin uncached. An object that turns
// out to be a Vary index sends it once more to its own variant.
//
// A fill that ended between the request's lookup and its Lock stored what
// the request needs, and Lock no longer knows of it: holding the lock,
// the request looks again (no other fill can store now) and, when that
// object may be used, gives the lock up and is served from it, not sent to
// the origin a second time. A waiter woken by a lock given up so (Lock
// answers ErrFillFailed) finds the object the same way.
func (s *Server[C]) cacheLock(sess *Session, ctx C) (bool, error) {
	cs := &sess.cache
	if s.passMarked(sess) {
		return false, nil
	}
	for range 2 {
		f, o, err := cs.store.Lock(cs.storeCtx(sess), cs.vkey, cs.cfg.lockTimeout())
		if f != nil || errors.Is(err, cache.ErrFillFailed) {
			if o = s.storedMeanwhile(sess); o == nil && f != nil {
				cs.fill = f
				return false, nil
			}
			if f != nil {
				f.Abort(errStoredMeanwhile)
			}
		}
		switch {
		case o != nil && o.Meta().Variants != nil:
			cs.index = o.Meta().Variants
			cs.vkey = cache.VariantKey(cs.key, cs.index, sess.Req.Header)
			if o, _ = cs.store.Lookup(cs.storeCtx(sess), cs.vkey); o != nil {
				s.metrics.cache.lockWaits.WithLabelValues("collapsed").Inc()
				return s.serveStored(sess, ctx, o, cacheCollapsed, "")
			}
		case o != nil:
			s.metrics.cache.lockWaits.WithLabelValues("collapsed").Inc()
			return s.serveStored(sess, ctx, o, cacheCollapsed, "")
		case sess.ctx.Err() != nil:
			return true, classifyIO(sess.ctx.Err(), Downstream)
		default:
			return false, s.lockFailed(sess, err)
		}
	}
	return false, nil
}

// errStoredMeanwhile ends a lock given up for an object a fill stored
// between the request's lookup and its lock.
var errStoredMeanwhile = errors.New("proxy: stored by another fill meanwhile")

// storedMeanwhile looks the request's key up again (cacheLock): the
// object stored under it when the request may use it as is (a Vary index
// too, or one still being filled, which a waiter would get), else nil.
// A request whose CacheHitFilter refused what its lookup found does not
// look again.
func (s *Server[C]) storedMeanwhile(sess *Session) cache.Object {
	cs := &sess.cache
	if cs.refused {
		return nil
	}
	o, err := cs.store.Lookup(cache.WithRecheck(cs.storeCtx(sess)), cs.vkey)
	switch {
	case err != nil || o == nil:
		return nil
	case o.Meta().Variants != nil || o.Len() < 0:
		return o
	case cache.Check(o.Meta(), cs.rq, s.clock.Now()).Use == cache.UseValidate:
		return nil // what the lookup found, or no better
	}
	return o
}

// lockFailed records why a request goes to the origin without the lock.
func (s *Server[C]) lockFailed(sess *Session, err error) error {
	cs := &sess.cache
	switch {
	case errors.Is(err, cache.ErrLockTimeout):
		cs.st.detail = "lock-timeout"
		s.metrics.cache.lockWaits.WithLabelValues("timeout").Inc()
	case errors.Is(err, cache.ErrFillFailed):
		cs.st.detail = "fill-failed"
		cs.fillFailed = true
		if r := cache.NotStorableReason(err); passReasons[r] {
			cs.st.detail, cs.fillReason = r, r
			s.markPass(sess, r) // before this request's own fetch: the next ones pass now
		}
		s.metrics.cache.lockWaits.WithLabelValues("fill_failed").Inc()
	default:
		cs.st.detail = "store-error"
		s.errLog.Warn("cache lock failed", "route", sess.Route, "err", err)
	}
	return nil
}

// onlyIfCached answers a request that accepts only a stored response when
// none can be used: 504 (RFC 9111 §5.2.1.7).
func (s *Server[C]) onlyIfCached(sess *Session) error {
	cs := &sess.cache
	cs.st.detail = "only-if-cached"
	h := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	s.setCacheStatus(sess, h)
	return sess.Respond(http.StatusGatewayTimeout, h, errorBody(http.StatusGatewayTimeout))
}

// cacheEnd closes the request's use of the cache: a fill still open is
// aborted (its readers see the error), and the outcome is recorded.
func (s *Server[C]) cacheEnd(sess *Session, err error) {
	cs := &sess.cache
	if cs.fill != nil {
		if err == nil {
			err = cache.ErrIncomplete
		}
		cs.fill.Abort(err)
		cs.fill = nil
		s.unstored(sess, "incomplete")
	}
	if cs.cfg == nil {
		return
	}
	if sess.CacheStatus == "" {
		sess.CacheStatus = cs.st.String()
	}
	if c := s.metrics.cache.byResult[cs.result]; c != nil {
		c.Inc()
	}
}
