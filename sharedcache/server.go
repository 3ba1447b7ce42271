package sharedcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/internal/msgpackx"
	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/wire"
)

// Serve registers on srv the calls other nodes make to this one: get
// (lookup, fill and handoff of an object, streamed), remove, purge, the
// purge log exchange and stats.
func (c *Cache) Serve(srv *wire.Server) {
	srv.HandleStream(methodGet, c.serveGet)
	wire.HandleFunc(srv, methodLookup, c.serveLookup)
	wire.HandleFunc(srv, methodRemove, c.serveRemove)
	wire.HandleFunc(srv, methodPurge, c.servePurge)
	wire.HandleFunc(srv, methodStats, c.serveStats)
	wire.HandleFunc(srv, methodPurgeSync, c.servePurgeSync)
}

// serveGet answers a get: a handoff from whatever this node holds, a
// lookup or a fill only for a key this node owns by its own ring (never
// forwarded further: a peer's request ends here).
func (c *Cache) serveGet(ctx context.Context, body []byte, w io.Writer) error {
	var g getRequest
	if err := msgpackx.Unmarshal(body, &g); err != nil {
		return fmt.Errorf("sharedcache: decode get: %w", err)
	}
	if g.Op == opHandoff {
		o, _ := c.local.Lookup(ctx, g.Key)
		return c.reply(ctx, w, o)
	}
	if err := c.checkOwner(ctx, g.Key); err != nil {
		if o := c.heldAnyway(ctx, g.Key); o != nil && (g.Op == opLookup || g.Req != nil && c.usable(o, cache.ParseRequest(g.Req.request().Header))) {
			return c.sendObject(ctx, w, o)
		}
		return err
	}
	if !c.beginServing() {
		return c.notOwner()
	}
	defer c.endServing()
	switch g.Op {
	case opLookup:
		o, _ := c.local.Lookup(ctx, g.Key)
		return c.reply(ctx, w, o)
	case opFill:
		return c.serveFill(ctx, &g, w)
	}
	return fmt.Errorf("sharedcache: unknown get op %d", g.Op)
}

// checkOwner refuses a call for a key this node does not own by its own
// ring. A caller whose ring differs is still served when this node owns
// the key (counted): rings converge, and refusing would send the key's
// traffic to the origin meanwhile.
func (c *Cache) checkOwner(ctx context.Context, key string) error {
	r := c.ring()
	if r == nil || c.draining.Load() {
		c.st.refused.Add(1)
		return c.notOwner()
	}
	if _, self := r.Owner(cache.PrimaryKey(key)); !self {
		c.st.refused.Add(1)
		return c.notOwner()
	}
	if v := wire.CallerRingVersion(ctx); v != 0 && v != r.Version() {
		c.st.ringMismatch.Add(1)
	}
	return nil
}

// heldAnyway returns the complete object this node holds for a key it
// does not own (a ring change in progress, or draining): it is served as
// is, never filled, so the caller need not go to the origin for it.
func (c *Cache) heldAnyway(ctx context.Context, key string) cache.Object {
	o, _ := c.local.Lookup(ctx, key)
	if o == nil || o.Len() < 0 {
		return nil
	}
	c.st.heldAnyway.Add(1)
	return o
}

// serveLookup answers a unary lookup or handoff: a small complete object
// inline, a miss, or word to stream it (methodGet).
func (c *Cache) serveLookup(ctx context.Context, r *lookupRequest) (*lookupReply, error) {
	var o cache.Object
	switch {
	case r.Op == opHandoff:
		o, _ = c.local.Lookup(ctx, r.Key)
	case c.checkOwner(ctx, r.Key) == nil:
		o, _ = c.local.Lookup(ctx, r.Key)
	default:
		if o = c.heldAnyway(ctx, r.Key); o == nil {
			return nil, c.notOwner()
		}
	}
	switch {
	case o == nil:
		return &lookupReply{Head: head{Kind: kindMiss}}, nil
	case o.Len() < 0 || o.Len() > inlineMax:
		return &lookupReply{Head: head{Kind: kindStream}}, nil
	}
	r2, err := o.NewReader(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer r2.Close()
	body := make([]byte, o.Len())
	if _, err := io.ReadFull(r2, body); err != nil {
		return nil, err
	}
	c.st.bytesToPeers.Add(o.Len())
	return &lookupReply{Head: head{Kind: kindObject, Meta: toWireMeta(o.Meta()), Len: o.Len()}, Body: body}, nil
}

// beginServing counts a lookup or fill stream for Drain; it reports
// false once the node drains.
func (c *Cache) beginServing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining.Load() {
		return false
	}
	c.servingN++
	c.st.serving.Add(1)
	return true
}

func (c *Cache) endServing() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.servingN--
	c.st.serving.Add(-1)
	if c.servingN == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
}

// reply sends o, or a miss.
func (c *Cache) reply(ctx context.Context, w io.Writer, o cache.Object) error {
	if o == nil {
		return writeHead(w, &head{Kind: kindMiss})
	}
	return c.sendObject(ctx, w, o)
}

// sendObject sends o's head and streams its body as it is written; a fill
// that fails mid-body fails the stream (the caller never sees a short
// body as whole).
func (c *Cache) sendObject(ctx context.Context, w io.Writer, o cache.Object) error {
	b, err := encodeHead(&head{Kind: kindObject, Meta: toWireMeta(o.Meta()), Len: o.Len()})
	if err != nil {
		return err
	}
	r, err := o.NewReader(ctx, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	bp := c.chunks.Get().(*[]byte)
	defer c.chunks.Put(bp)
	buf := *bp
	if n := o.Len(); n >= 0 && n <= inlineMax && len(b)+int(n) <= len(buf) {
		// A small complete object goes out in one write: head and body.
		k := copy(buf, b)
		if _, err := io.ReadFull(r, buf[k:k+int(n)]); err != nil {
			return err
		}
		_, err := w.Write(buf[:k+int(n)])
		c.st.bytesToPeers.Add(n)
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	if br, ok := r.(cache.BlockReader); ok && o.Len() >= 0 {
		// Complete and held in memory: the stream writes the stored
		// blocks as they are (a frame header, then the block), without
		// copying them through buf.
		// A reader a relay cut off fails: the stream must not end as if
		// the body were whole.
		blocks, err := br.Blocks(nil, -1)
		if err != nil {
			return err
		}
		var n int64
		for _, p := range blocks {
			k, err := w.Write(p)
			n += int64(k)
			if err != nil {
				c.st.bytesToPeers.Add(n)
				return err
			}
		}
		c.st.bytesToPeers.Add(n)
		return nil
	}
	n, err := io.CopyBuffer(w, r, buf)
	c.st.bytesToPeers.Add(n)
	return err
}

// serveFill answers a fill: the stored object when the request may use
// it, else (after the head "accepted", so the caller knows this node is
// alive while it waits) the fill under way, whose lock's waiters are
// local requests and peers alike, or a new fill from a previous owner or
// the origin. A fill that fails falls back on a stale object that
// stale-if-error allows.
func (c *Cache) serveFill(ctx context.Context, g *getRequest, w io.Writer) error {
	if g.Req == nil {
		return errors.New("sharedcache: fill without a request")
	}
	req := g.Req.request()
	rq := cache.ParseRequest(req.Header)
	o, _ := c.local.Lookup(ctx, g.Key)
	if o != nil && c.usable(o, rq) {
		return c.sendObject(ctx, w, o)
	}
	wait := time.Duration(g.Wait) * time.Microsecond
	if wait > 0 {
		if err := writeHead(w, &head{Kind: kindAccepted}); err != nil {
			return err
		}
	}
	f, other, err := c.lockOwned(ctx, g.Key, wait, rq)
	switch {
	case other != nil:
		return c.sendObject(ctx, w, other)
	case errors.Is(err, cache.ErrLockTimeout):
		return writeHead(w, &head{Kind: kindLockTimeout})
	case errors.Is(err, cache.ErrFillFailed):
		return c.failedFill(ctx, w, o, rq, err)
	case err != nil:
		return err
	}
	wf := c.startFill(req, g.Key, f, o)
	switch {
	case wf == nil:
		return writeHead(w, fillFailedHead(nil))
	case wait <= 0: // started for a caller that serves stale meanwhile
		return writeHead(w, &head{Kind: kindLockTimeout})
	}
	select {
	case ev := <-wf.ev:
		if ev.obj == nil {
			return c.failedFill(ctx, w, o, rq, ev.err)
		}
		return c.sendObject(ctx, w, ev.obj)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failedFill answers a fill that failed with err: the stale object when
// stale-if-error allows serving it (RFC 5861 §4), else "fill failed",
// with the reason err carries.
func (c *Cache) failedFill(ctx context.Context, w io.Writer, stale cache.Object, rq cache.Directives, err error) error {
	if stale != nil && stale.Meta().Variants == nil && stale.Len() >= 0 {
		if m := stale.Meta(); m.ServeStaleOnError(cache.Check(m, rq, c.cfg.Clock.Now())) {
			return c.sendObject(ctx, w, stale)
		}
	}
	return writeHead(w, fillFailedHead(err))
}

// usable reports whether the stored (or streaming) o answers a request
// with directives rq: a Vary index (the caller then asks for its variant),
// a fill under way, or a response fresh enough for rq.
func (c *Cache) usable(o cache.Object, rq cache.Directives) bool {
	if o.Meta().Variants != nil || o.Len() < 0 {
		return true
	}
	return cache.Check(o.Meta(), rq, c.cfg.Clock.Now()).Use != cache.UseValidate
}

// startFill runs the fill f of key for req through the Origin on a
// goroutine of the Cache (it outlives the call that started it, for the
// other waiters); it returns nil, f aborted, when it cannot. A variant is
// filled only under the index that selected it.
func (c *Cache) startFill(req *cache.Request, key string, f cache.Fill, stale cache.Object) *watchedFill {
	primary := cache.PrimaryKey(key)
	var idx *cache.Variants
	if primary != key {
		ix, _ := c.local.Lookup(c.ctx, primary)
		if ix == nil || ix.Meta().Variants == nil || cache.VariantKey(primary, ix.Meta().Variants, req.Header) != key {
			f.Abort(nil)
			return nil
		}
		idx = ix.Meta().Variants
	}
	if stale != nil && (stale.Meta().Variants != nil || stale.Len() < 0) {
		stale = nil
	}
	if c.cfg.Origin == nil {
		f.Abort(nil)
		return nil
	}
	wf := &watchedFill{Fill: f, store: c.local, key: key, ev: make(chan fillEvent, 1)} // one event, read by serveFill or dropped
	run := func() {
		c.cfg.Origin.Fill(c.ctx, OriginFill{Request: req, Key: primary, VariantKey: key, Index: idx, Fill: wf, Stale: stale, Store: c.local})
		wf.Abort(nil) // does nothing when the Origin ended it
	}
	if !c.goFunc(run) {
		f.Abort(errClosed)
		return nil
	}
	c.st.originFills.Add(1)
	return wf
}

// fillEvent is the first thing a watched fill did: published a head
// (obj, its object), refreshed the stored object (obj, the refreshed one),
// or ended without either (obj nil; err, what it was aborted with).
type fillEvent struct {
	obj cache.Object
	err error
}

// watchedFill tells serveFill when the Origin's fill has something to
// stream.
type watchedFill struct {
	cache.Fill
	store *cache.Memory
	key   string
	once  sync.Once
	ev    chan fillEvent
}

func (w *watchedFill) notify(o cache.Object, err error) {
	w.once.Do(func() { w.ev <- fillEvent{obj: o, err: err} })
}

// Start publishes the head and hands the fill's object on.
func (w *watchedFill) Start(m *cache.Meta, limit int64) error {
	if err := w.Fill.Start(m, limit); err != nil {
		w.notify(nil, err)
		return err
	}
	o, _ := w.store.Lookup(context.Background(), w.key) // nothing written yet: still the fill's
	w.notify(o, nil)
	return nil
}

// Refresh gives the stored object its new head and hands it on.
func (w *watchedFill) Refresh(m *cache.Meta) error {
	err := w.Fill.Refresh(m)
	var o cache.Object
	if err == nil {
		o, _ = w.store.Lookup(context.Background(), w.key)
	}
	w.notify(o, err)
	return err
}

// Abort ends the fill and tells the waiter it failed, and why.
func (w *watchedFill) Abort(err error) {
	w.Fill.Abort(err)
	w.notify(nil, err)
}

// removeRequest and removeReply are methodRemove's messages.
type (
	removeRequest struct {
		Key string `msgpack:"k"`
	}
	removeReply struct {
		Dropped bool `msgpack:"d"`
	}
)

func (c *Cache) serveRemove(ctx context.Context, r *removeRequest) (*removeReply, error) {
	a, _ := c.local.Remove(ctx, r.Key)
	b, _ := c.hot.Remove(ctx, r.Key)
	return &removeReply{Dropped: a || b}, nil
}
