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
	rc     io.ReadCloser
	br     *bufio.Reader
	cancel context.CancelFunc
}

func (s *ownerStream) close() {
	s.rc.Close()
	s.cancel()
}

// errOwnerTimeout is why a call is given up when its owner did not answer
// within OwnerTimeout.
var errOwnerTimeout = errors.New("sharedcache: the owner did not answer in time")

// open calls get on t and reads the first head, which must come within
// OwnerTimeout. The stream lives until the Cache closes or it is closed.
func (c *Cache) open(t target, g *getRequest) (*ownerStream, *head, error) {
	ctx, cancel := context.WithCancel(c.ctx)
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
		br = bufio.NewReaderSize(rc, bodyBuf)
		h, err = readHead(br)
	}
	fired := !timer.Stop()
	c.st.latency.observe(c.cfg.Clock.Now().Sub(start))
	if err != nil {
		if rc != nil {
			rc.Close()
		}
		cancel()
		if fired {
			err = fmt.Errorf("%w (%s): %w", errOwnerTimeout, c.cfg.OwnerTimeout, err)
		}
		return nil, nil, err
	}
	return &ownerStream{rc: rc, br: br, cancel: cancel}, h, nil
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
// one still streaming in) is copied into the hot tier as it streams; a
// stale one is handed on through a Pipe and not kept: the owner holds it
// and revalidates it when asked to fill. It returns the object this
// node's readers read, or nil.
func (c *Cache) lookupRemote(t target, key string) cache.Object {
	s, h, err := c.open(t, &getRequest{Op: opLookup, Key: key})
	if err != nil {
		c.callFailed(t, err)
		return nil
	}
	if h.Kind != kindObject || h.Meta == nil {
		s.close()
		return nil
	}
	if m := h.Meta.meta(); !c.fresh(m) {
		p := cache.NewPipe(m, c.cfg.MaxObjectBytes)
		if !c.goFunc(func() { c.pump(s, pipeSink{p}, h.Len) }) {
			s.close()
			return nil
		}
		return p.Object()
	}
	f, other, _ := c.hot.Lock(c.ctx, key, c.cfg.OwnerTimeout)
	if f == nil { // another request here holds the key: its object, if it has one
		s.close()
		return other
	}
	return c.adopt(s, h, f, c.hot, key)
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
		if o := c.adopt(s, h, hf, c.hot, key); o != nil {
			return nil, o, nil
		}
		return nil, nil, cache.ErrFillFailed
	}
	s.close()
	hf.Abort(cache.ErrFillFailed)
	if h.Kind == kindFillFailed {
		if p := cache.PrimaryKey(key); p != key {
			c.hot.Remove(c.ctx, p) // the index this variant came from may be gone at the owner
		}
		return nil, nil, cache.ErrFillFailed
	}
	return nil, nil, cache.ErrLockTimeout // kindAccepted (no wait), kindLockTimeout
}

// adopt starts f with the head h and pumps the body into it in the
// background; it returns the object readers read (f's, published).
func (c *Cache) adopt(s *ownerStream, h *head, f cache.Fill, into *cache.Memory, key string) cache.Object {
	if err := f.Start(h.Meta.meta(), 0); err != nil {
		s.close()
		f.Abort(err)
		return nil
	}
	o, _ := into.Lookup(c.ctx, key) // the fill's object: nothing written yet, so still under the lock
	if !c.goFunc(func() { c.pump(s, f, h.Len) }) {
		s.close()
		f.Abort(errClosed)
		return nil
	}
	return o
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
	buf := make([]byte, bodyBuf)
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
