package proxy

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// errUncacheable ends a fill whose response may not be stored: its waiters
// go to the origin themselves.
var errUncacheable = errors.New("proxy: response not storable")

// prepareFill shapes this attempt's upstream request when the request
// holds the key's fill: the client's preconditions are the cache's to
// answer (they would turn a storable 200 into a 304), and a revalidation
// sends the stored response's validators instead (RFC 9111 §4.3.1).
func (s *Server[C]) prepareFill(sess *Session, req *RequestHeader) {
	cs := &sess.cache
	for _, k := range cache.Conditionals {
		delete(req.Header, k)
	}
	if cs.stale != nil && !cs.refetch {
		cache.AddValidators(req.Header, cs.stale.Meta())
	}
	cs.reqTime = s.clock.Now()
}

// cacheResponse is the cache's part of an upstream response head, after
// UpstreamResponseFilter: invalidation after an unsafe method, the 304 or
// error that ends a revalidation, the decision to store and the start of
// the fill, and the Cache-Status field. done reports that it answered
// the request itself (and released ex); an error without done leaves ex
// to the caller.
func (s *Server[C]) cacheResponse(sess *Session, ctx C, ex exchange, resp *ResponseHeader) (done bool, err error) {
	cs := &sess.cache
	cs.st.fwdStatus = resp.Status
	if cs.invalidate && resp.Status >= 200 && resp.Status < 400 {
		s.invalidate(sess, ctx, resp.Header)
	}
	if cs.stale != nil {
		switch {
		case resp.Status == http.StatusNotModified && cs.fill != nil && !cs.refetch:
			if !cache.Selects(cs.stale.Meta().Header, resp.Header) {
				return true, s.refetch(sess, ctx, ex)
			}
			return true, s.refreshStale(sess, ctx, ex, resp)
		case serverError(resp.Status) && s.staleUsableOnError(sess):
			ex.release(false)
			return true, s.serveStaleOnError(sess, ctx)
		}
	}
	s.notePass(sess, resp)
	if cs.fill != nil {
		if err := s.startFill(sess, ctx, resp); err != nil {
			return false, err
		}
		// The client's preconditions were kept from the origin: answer
		// them from this response (RFC 9111 §4.3.2).
		if cache.NotModified(sess.Req.Header, resp.Status, resp.Header) {
			cs.clientDone = true
		}
	}
	s.setCacheStatus(sess, resp.Header)
	if cs.clientDone {
		resp.Status, resp.Header = http.StatusNotModified, cache.NotModifiedHeader(resp.Header)
	}
	return false, nil
}

func serverError(code int) bool {
	switch code {
	case 500, 502, 503, 504:
		return true
	}
	return false
}

// decideMeta decides whether resp may be stored (cache.Decide, then
// ResponseCacheFilter) and builds its stored head.
func (s *Server[C]) decideMeta(sess *Session, ctx C, resp *ResponseHeader) (*cache.Meta, cache.Decision, error) {
	cs := &sess.cache
	x := cache.Exchange{Method: http.MethodGet, Request: sess.Req.Header, Status: resp.Status, Header: resp.Header,
		Now: s.clock.Now(), DefaultStaleIfError: cs.cfg.DefaultStaleIfError}
	d := cache.Decide(x)
	if p := s.ph.respCache; p != nil {
		var err error
		if d, err = p.ResponseCacheFilter(sess, resp, ctx, d); err != nil {
			return nil, d, err
		}
	}
	switch fields, star := cache.VaryFields(resp.Header); {
	case !d.Store:
	case star:
		d.Store, d.Reason = false, "vary-star" // §4.1: it could never be used
	case variesOnClientAddr(fields):
		d.Store, d.Reason = false, "vary-client"
	}
	if cs.hopCacheField {
		// Said first: what the cache decided above is without the field.
		d.Store, d.Reason = false, "connection-named"
	}
	return cache.NewMeta(x, cs.reqTime, d), d, nil
}

// variesOnClientAddr reports whether a response's Vary fields name
// X-Forwarded-For (in any spelling: '_' for '-' reads the same to a
// CGI-style origin). The origin saw that field as this proxy wrote it,
// ending with the client's address (buildUpstreamRequest), but a variant
// is selected by the fields of the request as it arrived, where an
// untrusted client's is removed: every client would select the variant
// of the first, and get the page the origin made for that client's
// address. Keying the variant on the address instead would store one
// variant per client, which is no cache at all: such a response is not
// stored.
func variesOnClientAddr(fields []string) bool {
	for _, f := range fields {
		if fieldNameIs(f, "x-forwarded-for") {
			return true
		}
	}
	return false
}

// cacheFields are the response fields the cache decides by, or that it
// must not hand to every client.
var cacheFields = []string{"Vary", "Cache-Control", "Expires", "Pragma", "Age", "Set-Cookie", "Surrogate-Control", "Cdn-Cache-Control"}

// connectionNamesCacheField reports whether a response's Connection names
// one of cacheFields. A named field is for this hop only and is removed
// before the cache decides (stripHopByHop): "Connection: Vary" with
// "Vary: Cookie" was stored without its Vary and served to every cookie.
// Such a response is not stored: which of the origin's two readings it
// meant is not this cache's to guess.
func connectionNamesCacheField(h http.Header) bool {
	conn := h["Connection"]
	if len(conn) == 0 {
		return false
	}
	for _, f := range cacheFields {
		if len(h[f]) > 0 && namedByConnection(conn, f) {
			return true
		}
	}
	return false
}

// startFill stores the response as it streams, when it may be stored;
// else it releases the fill so its waiters go to the origin.
func (s *Server[C]) startFill(sess *Session, ctx C, resp *ResponseHeader) error {
	cs := &sess.cache
	meta, d, err := s.decideMeta(sess, ctx, resp)
	if err != nil {
		return err
	}
	reason := d.Reason
	switch {
	case !d.Store:
		if reason == "" {
			reason = "filter"
		}
	case contentLength(resp.Header) > cs.cfg.maxObject():
		reason = "too_large"
	default:
		f, why := s.fillFor(sess, meta)
		if f == nil {
			reason = why
			break
		}
		if err := f.Start(meta, cs.cfg.maxObject()); err != nil {
			// The store's own cap may be below the route's: a declared
			// length over it is refused here, before Cache-Status goes.
			reason = "store-error"
			if r := cache.NotStorableReason(err); r != "" {
				reason = r
			}
			break
		}
		cs.storing, cs.st.stored = true, true
		return nil
	}
	s.markPass(sess, reason)
	s.notStored(sess, reason)
	return nil
}

// passReason is why resp would not be stored, for a request that held no
// fill (its wait for another node's fill ended without one): cache.Decide
// and the size cap, without the ResponseCacheFilter, which only runs for
// a response the request may store.
func (s *Server[C]) passReason(sess *Session, resp *ResponseHeader) string {
	cs := &sess.cache
	d := cache.Decide(cache.Exchange{Method: http.MethodGet, Request: sess.Req.Header, Status: resp.Status, Header: resp.Header,
		Now: s.clock.Now(), DefaultStaleIfError: cs.cfg.DefaultStaleIfError})
	switch {
	case cs.hopCacheField:
		return "connection-named" // as decideMeta says it
	case !d.Store:
		return d.Reason
	case contentLength(resp.Header) > cs.cfg.maxObject():
		return "too_large"
	}
	return ""
}

// notStored ends the fill without storing and says why.
func (s *Server[C]) notStored(sess *Session, reason string) {
	cs := &sess.cache
	if cs.fill != nil {
		var err error = errUncacheable
		if passReasons[reason] { // the response's own reason: its waiters, here or on other nodes, learn it
			err = &cache.NotStorable{Reason: reason}
		}
		cs.fill.Abort(err)
		cs.fill = nil
	}
	cs.st.detail = reason
	s.metrics.cache.uncacheable.WithLabelValues(reason).Inc()
}

// fillFor returns the fill a response with meta goes into. A response
// that varies (§4.1) goes under its variant's key: the first one makes the
// key's index (a new generation) and takes its variant's lock before it
// publishes the index, so the requests waiting on the key find it. A
// response whose Vary differs from the index drops the index, and the
// next miss makes a new one.
func (s *Server[C]) fillFor(sess *Session, meta *cache.Meta) (cache.Fill, string) {
	cs := &sess.cache
	fields, _ := cache.VaryFields(meta.Header)
	switch {
	case cs.index == nil && len(fields) == 0:
		return cs.fill, ""
	case cs.index != nil && cache.SameFields(cs.index.Fields, fields):
		return cs.fill, ""
	case cs.index != nil:
		cs.store.Remove(cs.storeCtx(sess), cs.key)
		return nil, "vary-changed"
	}
	v := &cache.Variants{ID: s.varyIDs.next(), Fields: fields}
	vk := cache.VariantKey(cs.key, v, sess.Req.Header)
	f, _, err := cs.store.Lock(cs.storeCtx(sess), vk, 0)
	if f == nil {
		s.errLog.Warn("cache variant lock failed", "route", sess.Route, "err", err)
		return nil, "store-error"
	}
	idx := cs.fill
	err = idx.Start(cache.IndexMeta(v.ID, fields), 0)
	if err == nil {
		err = idx.Commit()
	}
	cs.fill, cs.index, cs.vkey = f, v, vk
	if err != nil {
		return nil, "store-error"
	}
	return f, ""
}

// teeFill writes a chunk of the upstream body into the fill; a store that
// fails only stops the storing.
func (s *Server[C]) teeFill(sess *Session, p []byte) {
	cs := &sess.cache
	if _, err := cs.fill.Write(p); err != nil {
		cs.fill.Abort(err)
		cs.fill, cs.storing = nil, false
		s.metrics.cache.uncacheable.WithLabelValues("store-error").Inc()
		s.unstored(sess, "store-error")
	}
}

// unstored records that a response whose head said stored was not
// stored after all, and why: a body without Content-Length that outgrew
// the limit, a fill the store did not keep or that broke. The head went
// out already; what the request logs (Session.CacheStatus) says so.
func (s *Server[C]) unstored(sess *Session, reason string) {
	cs := &sess.cache
	if !cs.st.stored {
		return
	}
	cs.st.stored, cs.st.detail = false, reason
	if sess.CacheStatus != "" {
		sess.CacheStatus = cs.st.String()
	}
}

// commitFill ends a fill whose body arrived whole.
func (s *Server[C]) commitFill(sess *Session) {
	cs := &sess.cache
	err := cs.fill.Commit()
	cs.fill, cs.storing = nil, false
	var reason string
	switch {
	case err == nil:
		s.metrics.cache.stored.Inc()
		return
	case errors.Is(err, cache.ErrTooLarge):
		reason = "too_large"
		s.markPass(sess, reason) // learned mid-body: the next requests pass
	case errors.Is(err, cache.ErrNotStored):
		reason = "invalidated"
	case errors.Is(err, cache.ErrNotAdmitted):
		reason = "not_admitted"
	default:
		reason = "store-error"
	}
	s.metrics.cache.uncacheable.WithLabelValues(reason).Inc()
	s.unstored(sess, reason)
}

// refreshStale ends a revalidation the origin answered 304: the stored
// head is updated with the 304's fields (RFC 9111 §4.3.4) and the stored
// response is served.
func (s *Server[C]) refreshStale(sess *Session, ctx C, ex exchange, resp *ResponseHeader) error {
	cs := &sess.cache
	old := cs.stale.Meta()
	// Merged before the drain: resp is the upstream connection's head
	// (map and values), which the next request to take the connection
	// from the pool reads its own response into.
	merged := &ResponseHeader{Status: old.Status, Header: cache.Merge304(old.Header, resp.Header)}
	drain(ex)
	meta, d, err := s.decideMeta(sess, ctx, merged)
	if err != nil {
		return err
	}
	if !d.Store {
		cs.store.Remove(cs.storeCtx(sess), cs.vkey) // the origin no longer lets it be stored
		s.notStored(sess, d.Reason)
	} else if err := cs.fill.Refresh(meta); err != nil {
		s.errLog.Debug("cache refresh not stored", "route", sess.Route, "err", err)
	}
	cs.fill, cs.result = nil, cacheRevalidated
	err = s.serveCached(sess, ctx, cs.stale, meta)
	if errors.Is(err, errUnreadable) {
		return &Error{Kind: KindInternal, Source: Internal, Err: err}
	}
	return err
}

// refetch answers a revalidation whose 304 is about another
// representation than the stored one (cache.Selects): the stored
// response is not refreshed, and the request goes to the same peer again
// (a new attempt: its upstream request built anew, through the phases)
// without validators, its answer stored as a new response would be
// (Cache-Status fwd=stale, fwd-status of that answer). A 304 to that
// request refreshes nothing either: it is the origin's answer, passed on.
func (s *Server[C]) refetch(sess *Session, ctx C, ex exchange) error {
	drain(ex)
	sess.cache.refetch = true
	return s.attempt(sess, ctx, sess.Peer, sess.body)
}

// drain reads a bodiless response to its end so its connection is reused.
func drain(ex exchange) {
	var b [512]byte
	for range 64 {
		if _, err := ex.read(b[:]); err != nil {
			ex.release(errors.Is(err, io.EOF))
			return
		}
	}
	ex.release(false)
}

// staleUsableOnError reports whether the stale response the request holds
// may replace an origin failure (RFC 5861 §4).
func (s *Server[C]) staleUsableOnError(sess *Session) bool {
	cs := &sess.cache
	if cs.stale == nil || sess.ds.started() {
		return false
	}
	return cs.stale.Meta().ServeStaleOnError(cache.Check(cs.stale.Meta(), cs.rq, s.clock.Now()))
}

// serveStaleOnError serves the stale response in place of an origin
// failure.
func (s *Server[C]) serveStaleOnError(sess *Session, ctx C) error {
	cs := &sess.cache
	if cs.fill != nil {
		cs.fill.Abort(errUncacheable)
		cs.fill = nil
	}
	cs.result, cs.st.detail = cacheStale, "stale-if-error"
	return s.serveCached(sess, ctx, cs.stale, cs.stale.Meta())
}

// invalidate drops what a successful unsafe request made stale (RFC 9111
// §4.4): its target URI, and the URIs of Location and Content-Location
// when they are of the same origin.
func (s *Server[C]) invalidate(sess *Session, ctx C, h http.Header) {
	cs := &sess.cache
	targets := []string{sess.Req.URI}
	for _, f := range []string{"Location", "Content-Location"} {
		if u := sameOriginURI(sess, h.Get(f)); u != "" {
			targets = append(targets, u)
		}
	}
	orig := sess.Req
	defer func() { sess.Req = orig }()
	for _, uri := range targets {
		sess.Req = &RequestHeader{Method: http.MethodGet, URI: uri, Host: orig.Host, Header: orig.Header, ProtoMajor: orig.ProtoMajor, ProtoMinor: orig.ProtoMinor}
		key, err := s.cacheKey(sess, ctx)
		if err != nil {
			continue
		}
		if _, err := cs.store.Remove(cs.storeCtx(sess), key); err == nil {
			s.metrics.cache.invalidated.Inc()
		}
	}
}

// sameOriginURI resolves ref against the request's URI and returns its
// origin-form target, normalised as a client's is (so it names the same
// cache key), when its origin (scheme and authority) is the request's,
// else "".
func sameOriginURI(sess *Session, ref string) string {
	if ref == "" {
		return ""
	}
	base, err := url.Parse(sess.scheme() + "://" + sess.Req.Host + sess.Req.URI)
	if err != nil {
		return ""
	}
	u, err := base.Parse(ref)
	if err != nil || u.Scheme != base.Scheme || !strings.EqualFold(u.Host, base.Host) {
		return ""
	}
	return normalizeURI(u.RequestURI())
}
