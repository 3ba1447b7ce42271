package sharedcache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/wire"
)

// bodyBuf is the read size of a body streaming from an owner.
const bodyBuf = 64 << 10

// ownerStream is a get's answer being read: heads, then the body.
type ownerStream struct {
	c      *Cache
	rc     io.ReadCloser
	br     *bufio.Reader // from c.bufs, returned by close
	cancel context.CancelFunc
}

func (s *ownerStream) close() {
	s.rc.Close()
	s.cancel()
	if s.br != nil {
		s.br.Reset(nil)
		s.c.bufs.Put(s.br)
		s.br = nil
	}
}

// idempotent marks a call's context as safe to run twice at the owner, so
// that a call on a pooled connection that turns out dead (a restarted or
// blipped owner) is sent again on a new one instead of making the owner
// suspect (see wire.WithIdempotent). Every call of the cache is: lookups,
// handoffs and stats read; a fill run twice is one more origin request for
// a GET at worst (the owner's cache lock usually joins the two), which is
// what the fallback would cost anyway; remove and purge drop what is
// there, and only the count of a repeated one may read low.
func idempotent(ctx context.Context) context.Context { return wire.WithIdempotent(ctx) }

// errOwnerTimeout is why a call is given up when its owner did not answer
// within OwnerTimeout.
var errOwnerTimeout = errors.New("sharedcache: the owner did not answer in time")

// open calls get on t and reads the first head, which must come within
// OwnerTimeout. The stream lives until the Cache closes or it is closed.
func (c *Cache) open(t target, g *getRequest) (*ownerStream, *head, error) {
	ctx, cancel := context.WithCancel(idempotent(c.ctx))
	if r := c.ring(); r != nil {
		ctx = wire.WithRingVersion(ctx, r.Version())
	}
	timer := c.cfg.Clock.AfterFunc(c.cfg.OwnerTimeout, cancel)
	start := c.cfg.Clock.Now()
	c.st.ownerCalls.Add(1)
	defer c.st.ownerCalls.Add(-1)
	rc, err := c.cfg.Client.CallStream(ctx, t.addr, methodGet, g)
	var h *head
	var br *bufio.Reader
	if err == nil {
		br = c.bufs.Get().(*bufio.Reader)
		br.Reset(rc)
		h, err = readHead(br)
	}
	fired := !timer.Stop()
	c.st.latency.observe(c.cfg.Clock.Now().Sub(start))
	if err != nil {
		if rc != nil {
			rc.Close()
			c.bufs.Put(br)
		}
		cancel()
		if fired {
			err = fmt.Errorf("%w (%s): %w", errOwnerTimeout, c.cfg.OwnerTimeout, err)
		}
		return nil, nil, err
	}
	return &ownerStream{c: c, rc: rc, br: br, cancel: cancel}, h, nil
}

// next reads the next head, waiting at most wait.
func (c *Cache) next(s *ownerStream, wait time.Duration) (*head, error) {
	timer := c.cfg.Clock.AfterFunc(wait, s.cancel)
	h, err := readHead(s.br)
	if !timer.Stop() && err != nil {
		return nil, cache.ErrLockTimeout
	}
	return h, err
}

// callFailed records a call that failed before its first head: "not the
// owner" is a ring disagreement (the caller serves the key itself, no
// retry elsewhere); anything else makes the owner suspect.
func (c *Cache) callFailed(t target, err error) {
	if errors.Is(err, wire.ErrNotOwner) {
		c.st.notOwner.Add(1)
		return
	}
	if errors.Is(err, context.Canceled) && c.ctx.Err() != nil {
		return // closing
	}
	c.st.callErrors.Add(1)
	c.markSuspect(t.id, err)
}

// lookupRemote asks owner t for key without filling. A fresh object (or
// one still streaming in) is copied into the hot tier as it arrives; a
// stale one is handed on through a Pipe and not kept: the owner holds it
// and revalidates it when asked to fill. It returns the object this
// node's readers read, or nil.
func (c *Cache) lookupRemote(t target, key string) cache.Object {
	s, h, body, err := c.ask(t, key, opLookup)
	if err != nil {
		c.callFailed(t, err)
		return nil
	}
	if h.Kind != kindObject || h.Meta == nil {
		if s != nil {
			s.close()
		}
		return nil
	}
	if !c.fresh(h.Meta.meta()) || c.cfg.HotBytes < 0 {
		return c.receive(s, h, body, nil, nil, key)
	}
	f, other, _ := c.hot.Lock(c.ctx, key, c.cfg.OwnerTimeout)
	if f == nil { // another request here holds the key: its object, if it has one
		if s != nil {
			s.close()
		}
		return other
	}
	return c.receive(s, h, body, f, c.hot, key)
}

// ask asks t for key without filling (a lookup, or a handoff): first a
// unary call, which brings a small complete object inline in one round
// trip on the shared connection; then, for a large object or one still
// being filled, a stream (methodGet), returned with its first head.
func (c *Cache) ask(t target, key string, o op) (*ownerStream, *head, []byte, error) {
	ctx, cancel := context.WithTimeout(idempotent(c.ctx), c.cfg.OwnerTimeout)
	defer cancel()
	if r := c.ring(); r != nil {
		ctx = wire.WithRingVersion(ctx, r.Version())
	}
	start := c.cfg.Clock.Now()
	c.st.ownerCalls.Add(1)
	var rep lookupReply
	err := c.cfg.Client.Call(ctx, t.addr, methodLookup, &lookupRequest{Op: o, Key: key}, &rep)
	c.st.ownerCalls.Add(-1)
	c.st.latency.observe(c.cfg.Clock.Now().Sub(start))
	switch {
	case err != nil:
		return nil, nil, nil, err
	case rep.Head.Kind == kindStream:
		s, h, err := c.open(t, &getRequest{Op: o, Key: key})
		return s, h, nil, err
	}
	return nil, &rep.Head, rep.Body, nil
}

// sink is what a body from an owner streams into: a fill, or a Pipe.
type sink interface {
	Write(p []byte) (int, error)
	Commit() error
	Abort(err error)
}

// pipeSink is a Pipe as a sink.
type pipeSink struct{ p *cache.Pipe }

func (s pipeSink) Write(b []byte) (int, error) { return s.p.Write(b) }
func (s pipeSink) Commit() error               { s.p.Close(); return nil }
func (s pipeSink) Abort(err error)             { s.p.CloseWithError(err) }

// fillRemote asks owner t to fill key for req and hands the answer to the
// hot fill hf: the owner's object streams into it and its readers are
// served from it. An owner that cannot be asked leaves hf to the caller,
// which fills from the origin itself.
func (c *Cache) fillRemote(t target, key string, req *cache.Request, wait time.Duration, hf cache.Fill) (cache.Fill, cache.Object, error) {
	g := &getRequest{Op: opFill, Key: key, Wait: wait.Microseconds(), Req: toWireRequest(req)}
	s, h, err := c.open(t, g)
	if err != nil {
		c.callFailed(t, err)
		if errors.Is(err, wire.ErrNotOwner) {
			// Rings disagree while membership changes: the key's owner
			// before the change may still hold it.
			switch o, ended := c.fromPrevious(t, key, hf, c.hot); {
			case o != nil:
				return nil, o, nil
			case ended:
				return nil, nil, cache.ErrFillFailed
			}
		}
		c.st.fallbacks.Add(1)
		return hf, nil, nil
	}
	if h.Kind == kindAccepted && wait > 0 {
		h, err = c.next(s, wait)
	}
	switch {
	case errors.Is(err, cache.ErrLockTimeout):
		s.close()
		hf.Abort(err)
		return nil, nil, err
	case err != nil: // the owner went away while its origin answered: fill here
		s.close()
		c.callFailed(t, err)
		c.st.fallbacks.Add(1)
		return hf, nil, nil
	case h.Kind == kindObject && h.Meta != nil:
		if o := c.receive(s, h, nil, hf, c.hot, key); o != nil {
			return nil, o, nil
		}
		return nil, nil, cache.ErrFillFailed
	}
	s.close()
	if h.Kind == kindFillFailed {
		err := fillFailedErr(h)
		hf.Abort(err) // this node's waiters on the key learn the reason too
		if p := cache.PrimaryKey(key); p != key {
			c.hot.Remove(c.ctx, p) // the index this variant came from may be gone at the owner
		}
		return nil, nil, err
	}
	hf.Abort(cache.ErrFillFailed)
	return nil, nil, cache.ErrLockTimeout // kindAccepted (no wait), kindLockTimeout
}

// inlineMax is the largest body received while the caller waits, in
// the call's goroutine: a small object costs no goroutine, and its stream
// connection is free for the next call when the lookup returns.
const inlineMax = 32 << 10

// receive takes the object announced by h into f, the fill of key in
// tier (or, f nil, into a Pipe that keeps nothing), and returns the
// object readers read. The body came inline (s nil), or is read from s:
// a small one of known length before receive returns, a larger one
// pumped in the background as it streams.
func (c *Cache) receive(s *ownerStream, h *head, inline []byte, f cache.Fill, tier *cache.Memory, key string) cache.Object {
	meta := h.Meta.meta()
	var dst sink
	var o cache.Object
	if f == nil {
		p := cache.NewPipe(meta, c.cfg.MaxObjectBytes)
		dst, o = pipeSink{p}, p.Object()
	} else {
		if err := f.Start(meta, 0); err != nil {
			if s != nil {
				s.close()
			}
			f.Abort(err)
			return nil
		}
		dst = f
		o, _ = tier.Lookup(c.ctx, key) // the fill's object: nothing written yet, so still under the lock
	}
	switch {
	case s == nil:
		if int64(len(inline)) != h.Len {
			dst.Abort(errShortBody)
			return nil
		}
		dst.Write(inline)
		dst.Commit()
		c.st.bytesRemote.Add(h.Len)
	case h.Len >= 0 && h.Len <= inlineMax:
		c.readInline(s, dst, h.Len)
	case !c.goFunc(func() { c.pump(s, dst, h.Len) }):
		s.close()
		dst.Abort(errClosed)
		return nil
	}
	return o
}

// readInline reads a body of n bytes and the stream's clean end into
// dst, bounded by BodyIdleTimeout.
func (c *Cache) readInline(s *ownerStream, dst sink, n int64) {
	defer s.close()
	idle := c.cfg.Clock.AfterFunc(c.cfg.BodyIdleTimeout, s.cancel)
	defer idle.Stop()
	buf := c.chunks.Get().(*[]byte)
	defer c.chunks.Put(buf)
	body := (*buf)[:n]
	_, err := io.ReadFull(s.br, body)
	if err == nil {
		if _, err = s.br.Read((*buf)[n : n+1]); err == nil {
			err = errors.New("sharedcache: body longer than the owner announced")
		}
	}
	if err != io.EOF {
		dst.Abort(fmt.Errorf("sharedcache: body from the owner: %w", err))
		return
	}
	dst.Write(body)
	dst.Commit()
	c.st.bytesRemote.Add(n)
}

// errShortBody is how a body that ended before its announced length
// fails its readers.
var errShortBody = errors.New("sharedcache: body shorter than the owner announced")

// pump copies a body from an owner into f: committed when the owner ended
// the stream cleanly with every byte, aborted otherwise (its readers get
// the error, never a short body that looks whole). An owner that sends
// nothing for BodyIdleTimeout is cut.
func (c *Cache) pump(s *ownerStream, f sink, want int64) {
	defer s.close()
	bp := c.chunks.Get().(*[]byte)
	defer c.chunks.Put(bp)
	buf := *bp
	var got int64
	for {
		idle := c.cfg.Clock.AfterFunc(c.cfg.BodyIdleTimeout, s.cancel)
		n, err := s.br.Read(buf)
		idle.Stop()
		if n > 0 {
			f.Write(buf[:n])
			got += int64(n)
			c.st.bytesRemote.Add(int64(n))
		}
		switch {
		case err == io.EOF && want >= 0 && got != want:
			f.Abort(errShortBody)
			return
		case err == io.EOF:
			f.Commit()
			return
		case err != nil:
			f.Abort(fmt.Errorf("sharedcache: body from the owner: %w", err))
			return
		}
	}
}
