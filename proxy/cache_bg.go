package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// background runs the cache's own requests: revalidations of stale
// responses served while they refresh (stale-while-revalidate). Each is
// started through start and joined by close.
type background struct {
	mu       sync.Mutex
	ctx      context.Context
	cancel   context.CancelFunc
	sessions map[*Session]struct{}
	wg       sync.WaitGroup
	closed   bool
}

func newBackground() *background {
	ctx, cancel := context.WithCancel(context.Background())
	return &background{ctx: ctx, cancel: cancel, sessions: map[*Session]struct{}{}}
}

// start runs fn for sess in a goroutine of its own; it reports false when
// the server is closing.
func (b *background) start(sess *Session, fn func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.sessions[sess] = struct{}{}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
		b.mu.Lock()
		delete(b.sessions, sess)
		b.mu.Unlock()
	}()
	return true
}

// run runs fn for sess in the caller's goroutine, tracked like start's
// requests so that close cuts it short and waits for it; it reports false
// (and does not run fn) when the server is closing.
func (b *background) run(sess *Session, fn func()) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	b.sessions[sess] = struct{}{}
	b.wg.Add(1)
	b.mu.Unlock()
	defer b.wg.Done()
	fn()
	b.mu.Lock()
	delete(b.sessions, sess)
	b.mu.Unlock()
	return true
}

// close cancels the requests under way (an upstream head wait ends at
// once; a body read within its idle timeout) and waits for them.
func (b *background) close() {
	b.mu.Lock()
	b.closed = true
	b.cancel()
	for sess := range b.sessions {
		sess.abortUpstream()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// refreshLater revalidates the stale obj in the background with the fill f
// that sess took: a GET of its own through the phases (Session.Background
// is set), whose response goes only to the cache. It reports false when
// it could not start; the caller then ends f.
func (s *Server[C]) refreshLater(sess *Session, f cache.Fill, obj cache.Object) bool {
	if s.draining.Load() {
		return false
	}
	src := sess.Req
	h := make(http.Header, len(src.Header))
	for k, v := range src.Header {
		if k == "Range" || k == "If-Range" || k == "If-None-Match" || k == "If-Modified-Since" || isOverrideField(k) {
			continue // a fill is of the whole response, of this URL and GET
		}
		// A copy: the connection's parser reuses its value slices for
		// the next request while this one runs.
		h[k] = append([]string(nil), v...)
	}
	req := &RequestHeader{Method: http.MethodGet, URI: src.URI, Host: src.Host, Header: h, ProtoMajor: src.ProtoMajor, ProtoMinor: src.ProtoMinor}
	bg := &Session{ClientIP: sess.ClientIP, TLS: sess.TLS, Listener: sess.Listener}
	bg.reset(s.bg.ctx, req, nullDownstream{})
	// The client trusted proxies reported, as the request's own: client_ip
	// hashing (a ketama route's origin), rate limits and the phases see
	// the refresh as they saw the request, not as the balancer's.
	bg.ForwardedIP = sess.ForwardedIP
	bg.Background = true
	cs := &sess.cache
	bg.cache = cacheState{key: cs.key, vkey: cs.vkey, index: cs.index, fill: f, stale: obj}
	return s.bg.start(bg, func() { s.handle(bg, time.Now()) })
}

// nullDownstream is the client side of a background request: no body in,
// and everything written is dropped.
type nullDownstream struct{}

func (nullDownstream) body(int64) (io.Reader, bool)    { return strings.NewReader(""), false }
func (nullDownstream) contentLength() int64            { return 0 }
func (nullDownstream) trailer() http.Header            { return nil }
func (nullDownstream) trailersFollow()                 {}
func (nullDownstream) writeHead(*ResponseHeader) error { return nil }
func (nullDownstream) write([]byte) error              { return nil }
func (nullDownstream) blocked(int) bool                { return false }
func (nullDownstream) flush() error                    { return nil }
func (nullDownstream) finish(http.Header) error        { return nil }
func (nullDownstream) started() bool                   { return false }
func (nullDownstream) abort()                          {}
func (nullDownstream) upgrade() string                 { return "" }
func (nullDownstream) errorCloses(int) bool            { return false }
func (nullDownstream) interruptBody()                  {}
func (nullDownstream) resumeBody()                     {}
