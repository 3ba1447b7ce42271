package sharedcache

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/pingora-go/pingora-go/internal/msgpackx"
	"github.com/pingora-go/pingora-go/proxy/cache"
)

// A cache stream carries a process's local tier to its successor on a
// graceful upgrade (Bequeath writes it, Inherit reads it): the same node,
// same ring share, so the keys it owned stay owned and need not go back
// to the origin. It is a sequence of frames, each a type byte, a 4-byte
// length and a msgpack payload:
//
//	H  hello {version}
//	P  purges: the sender's purge log, then each purge it applies later
//	O  object {key, head, length}, followed by length raw body bytes
//	E  end of the objects {objects, bytes}; P frames may still follow
//
// The sender sends its log first and every purge it applies afterwards,
// as long as the stream is open (it stays open while the old process
// drains, until its cache closes), so a purge that reaches only the old
// process during the upgrade still reaches what the successor inherited.
const (
	frameHello  = 'H'
	framePurges = 'P'
	frameObject = 'O'
	frameEnd    = 'E'
)

// streamVersion is the cache stream's format; a successor drops a stream
// of another version (it starts empty, as before the stream existed).
const streamVersion = 1

// maxFrame bounds a frame's payload: a purge log travels whole
// (maxPurgeLogBytes) with its msgpack framing.
const maxFrame = 2 * maxPurgeLogBytes

type (
	streamHello struct {
		Version int `msgpack:"v"`
	}
	streamObject struct {
		Key  string    `msgpack:"k"`
		Meta *wireMeta `msgpack:"m"`
		Len  int64     `msgpack:"l"`
	}
	streamEnd struct {
		Objects int   `msgpack:"o"`
		Bytes   int64 `msgpack:"b"`
	}
)

func writeFrame(w io.Writer, t byte, v any) error {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return fmt.Errorf("sharedcache: encode frame: %w", err)
	}
	if len(b) > maxFrame {
		return fmt.Errorf("sharedcache: frame of %d bytes, at most %d", len(b), maxFrame)
	}
	var h [5]byte
	h[0] = t
	binary.BigEndian.PutUint32(h[1:], uint32(len(b)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// readFrame reads one frame's type and payload.
func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("sharedcache: cache stream frame of %d bytes, at most %d", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, nil, unexpected(err)
	}
	return h[0], b, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Bequeath streams the local tier's complete objects, and the purge log,
// to the successor process at the other end of conn, on a goroutine; it
// reports false, doing nothing, when the cache is closed. The objects go
// one at a time from where they are held (no copy of the tier), within
// timeout: what is left then is not sent. The stream then stays open and
// carries every purge applied here, until Close (or the successor closes
// it). conn is closed at the end; closing it sooner stops the stream.
// The objects are those held when it starts and, in a second pass, those
// stored while the first went; BequeathUntil takes the second later.
func (c *Cache) Bequeath(conn net.Conn, timeout time.Duration) bool {
	return c.BequeathUntil(conn, timeout, nil)
}

// BequeathUntil is Bequeath, with the second pass (the objects stored
// here since the first listed the tier) waiting until served closes: the
// successor serves from then on, so what this process stores until then
// would otherwise go back to the origin. It waits within timeout (a
// tenth of it is left for the end to reach the successor before its own
// deadline), forwarding purges meanwhile; the second pass sends what
// time remains for. A nil served does not wait.
func (c *Cache) BequeathUntil(conn net.Conn, timeout time.Duration, served <-chan struct{}) bool {
	ok := c.goFunc(func() { c.bequeath(conn, timeout, served) })
	if !ok {
		conn.Close()
	}
	return ok
}

func (c *Cache) bequeath(conn net.Conn, timeout time.Duration, served <-chan struct{}) {
	defer conn.Close()
	gone := make(chan struct{}) // the successor closed its end
	go func() {                 // ends when conn is closed, by the deferred Close at the latest
		defer close(gone)
		var b [1]byte
		conn.Read(b[:])
	}()
	stop := context.AfterFunc(c.ctx, func() { conn.SetWriteDeadline(time.Now()) })
	defer stop()
	start := time.Now()
	// The objects stop at timeout; the slack lets the one under way and
	// the end go out.
	conn.SetWriteDeadline(start.Add(timeout + purgeForwardTimeout))
	bw := bufio.NewWriterSize(conn, bodyBuf)
	s := bequest{c: c, w: bw, sent: map[string]struct{}{}}
	changes := c.plog.changes()
	if err := writeFrame(bw, frameHello, &streamHello{Version: streamVersion}); err != nil {
		return
	}
	if err := s.purges(); err != nil {
		return
	}
	var keys []string
	c.localIdx.Range(func(k string, _ any, _ int64) bool {
		keys = append(keys, k)
		return true
	})
	var end streamEnd
	offered := len(keys)
	if !s.pass(keys, start, timeout, &end, &changes) {
		return
	}
	// The process still serves, and fills, until the successor does.
	if !s.await(served, start.Add(timeout-timeout/10), gone, &changes) {
		return
	}
	listed := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		listed[k] = struct{}{}
	}
	keys = keys[:0]
	c.localIdx.Range(func(k string, _ any, _ int64) bool {
		if _, ok := listed[k]; !ok {
			keys = append(keys, k)
		}
		return true
	})
	listed = nil
	offered += len(keys)
	if !s.pass(keys, start, timeout, &end, &changes) {
		return
	}
	// The objects' deadline may have passed: the end still goes, so the
	// successor keeps reading the purges that follow.
	conn.SetWriteDeadline(time.Now().Add(purgeForwardTimeout))
	if writeFrame(bw, frameEnd, &end) != nil || bw.Flush() != nil {
		return
	}
	c.cfg.Logger.Info("sharedcache: cache streamed to the successor", "objects", end.Objects, "bytes", end.Bytes,
		"of_objects", offered, "seconds", time.Since(start).Seconds())
	// The purges applied here from now on (the old process still serves
	// its peers' calls while it drains) follow what was sent.
	for {
		select {
		case <-changes:
			changes = c.plog.changes()
		case <-gone:
			return
		case <-c.ctx.Done():
		}
		conn.SetWriteDeadline(time.Now().Add(purgeForwardTimeout))
		if s.purges() != nil || bw.Flush() != nil || c.ctx.Err() != nil {
			return
		}
	}
}

// pass sends the objects stored under keys, and the purges logged
// meanwhile, until timeout from start; it adds what it sent to end and
// reports false when the stream failed.
func (s *bequest) pass(keys []string, start time.Time, timeout time.Duration, end *streamEnd, changes *<-chan struct{}) bool {
	c := s.c
	for _, k := range keys {
		if c.ctx.Err() != nil || time.Since(start) > timeout {
			break
		}
		select {
		case <-*changes:
			*changes = c.plog.changes()
			if err := s.purges(); err != nil {
				return false
			}
		default:
		}
		n, err := s.object(k)
		if err != nil {
			c.cfg.Logger.Warn("sharedcache: streaming the cache to the successor failed", "objects", end.Objects, "err", err)
			return false
		}
		if n >= 0 {
			end.Objects++
			end.Bytes += n
		}
	}
	return true
}

// await waits until served closes (at once when it is nil), or until
// deadline, sending the purges logged meanwhile; it reports false when
// the successor closed the stream or it failed.
func (s *bequest) await(served <-chan struct{}, deadline time.Time, gone <-chan struct{}, changes *<-chan struct{}) bool {
	if served == nil {
		return true
	}
	if err := s.w.Flush(); err != nil { // what the first pass sent is stored meanwhile
		return false
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case <-served:
			return true
		case <-timer.C:
			return true
		case <-s.c.ctx.Done():
			return true // the end goes, or fails, as after a cut pass
		case <-gone:
			return false
		case <-*changes:
			*changes = s.c.plog.changes()
			if s.purges() != nil || s.w.Flush() != nil {
				return false
			}
		}
	}
}

// purgeForwardTimeout bounds the write of a purge forwarded to the
// successor after the objects.
const purgeForwardTimeout = 5 * time.Second

// bequest is the sending side's state.
type bequest struct {
	c    *Cache
	w    *bufio.Writer
	sent map[string]struct{} // purge IDs sent
}

// purges sends the logged purges not sent yet.
func (s *bequest) purges() error {
	all, _ := s.c.plog.since(0)
	var out []logEntry
	for _, e := range all {
		if _, ok := s.sent[e.ID]; !ok {
			s.sent[e.ID] = struct{}{}
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return writeFrame(s.w, framePurges, out)
}

// object sends the complete object stored under key and returns its body
// length; -1 when key holds none now.
func (s *bequest) object(key string) (int64, error) {
	v, ok := s.c.localIdx.Get(key)
	if !ok {
		return -1, nil
	}
	o, ok := v.(cache.Object)
	if !ok || o.Len() < 0 {
		return -1, nil
	}
	n := o.Len()
	r, err := o.NewReader(s.c.ctx, 0)
	if err != nil {
		return -1, nil
	}
	defer r.Close()
	if err := writeFrame(s.w, frameObject, &streamObject{Key: key, Meta: toWireMeta(o.Meta()), Len: n}); err != nil {
		return -1, err
	}
	if br, ok := r.(cache.BlockReader); ok {
		blocks, err := br.Blocks(nil, n)
		if err != nil {
			return -1, err
		}
		var m int64
		for _, b := range blocks {
			if _, err := s.w.Write(b); err != nil {
				return -1, err
			}
			m += int64(len(b))
		}
		if m != n {
			return -1, fmt.Errorf("sharedcache: %d of %d body bytes held", m, n)
		}
		return n, nil
	}
	if _, err := io.CopyN(s.w, r, n); err != nil {
		return -1, err
	}
	return n, nil
}

// InheritStats says what this process inherited from the one it took
// over from: the objects (and their body bytes) stored, those skipped
// (held already, purged meanwhile, over the object limit, or not
// admitted), the purges its log passed that were new here, and how long
// the objects took.
type InheritStats struct {
	// State is "receiving", "done" (the whole stream arrived), "cut"
	// (the deadline, or the stream failed: what arrived is kept), or ""
	// when nothing was inherited (not an upgrade, or an older process).
	State   string  `json:"state,omitempty"`
	Objects int     `json:"objects"`
	Bytes   int64   `json:"bytes"`
	Skipped int     `json:"skipped"`
	Purges  int     `json:"purges"`
	Offered int     `json:"offered"` // objects the old process sent, as it counted them
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

// inheritance is InheritStats under a lock.
type inheritance struct {
	mu    sync.Mutex
	st    InheritStats
	ended bool      // the stream ended, purges after the objects included
	start time.Time // when the objects began to be read
}

func (in *inheritance) update(f func(*InheritStats)) {
	in.mu.Lock()
	f(&in.st)
	in.mu.Unlock()
}

// Inherited returns what Inherit has taken in so far; while it
// receives, Seconds is how long it has.
func (c *Cache) Inherited() InheritStats {
	c.inherit.mu.Lock()
	defer c.inherit.mu.Unlock()
	st := c.inherit.st
	if st.State == "receiving" && !c.inherit.start.IsZero() {
		st.Seconds = time.Since(c.inherit.start).Seconds()
	}
	return st
}

// Inherit reads the cache stream the process this one took over from
// writes (Bequeath) on a goroutine, and stores its objects in the local
// tier as they arrive: a key held here already (filled since, or a fill
// under way) keeps its object, and an object a purge logged on either
// side selects is dropped. The objects must arrive within timeout; those
// that do are kept whatever happens to the rest. It never holds up a
// request: lookups find the objects as they are stored. Purges the old
// process applies later are applied here as they arrive; when the stream
// ends, this node also exchanges purge logs with every member, if it
// stored any object (purges that reached only the old process while it
// went away). It reports
// false, doing nothing, when the cache is closed; conn is closed at the
// end.
func (c *Cache) Inherit(conn net.Conn, timeout time.Duration) bool {
	c.inherit.update(func(st *InheritStats) { st.State = "receiving" })
	ok := c.goFunc(func() { c.inheritFrom(conn, timeout) })
	if !ok {
		conn.Close()
		c.inherit.update(func(st *InheritStats) { st.State = "" })
	}
	return ok
}

func (c *Cache) inheritFrom(conn net.Conn, timeout time.Duration) {
	defer conn.Close()
	defer func() {
		c.inherit.mu.Lock()
		c.inherit.ended = true
		c.inherit.mu.Unlock()
	}()
	stop := context.AfterFunc(c.ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	start := time.Now()
	c.inherit.mu.Lock()
	c.inherit.start = start
	c.inherit.mu.Unlock()
	conn.SetReadDeadline(start.Add(timeout))
	r := heir{c: c, br: bufio.NewReaderSize(conn, bodyBuf), start: start}
	err := r.objects()
	secs := time.Since(start).Seconds()
	c.inherit.update(func(st *InheritStats) {
		st.Seconds = secs
		st.State = "done"
		if err != nil {
			st.State, st.Error = "cut", err.Error()
		}
	})
	st := c.Inherited()
	args := []any{"objects", st.Objects, "bytes", st.Bytes, "skipped", st.Skipped, "offered", st.Offered, "purges", st.Purges, "seconds", secs}
	if err != nil {
		c.cfg.Logger.Warn("sharedcache: inherited part of the previous process's cache", append(args, "err", err)...)
	} else {
		c.cfg.Logger.Info("sharedcache: inherited the previous process's cache", args...)
	}
	if err == nil {
		// The purges the old process applies while it drains.
		conn.SetReadDeadline(time.Time{})
		if c.ctx.Err() == nil {
			r.tail()
		}
	}
	if st.Objects > 0 {
		c.syncAll(start.Add(-purgeSyncMargin).UnixNano())
	}
}

// syncAll has RetryPurgeSync exchange purge logs with every member, from
// since.
func (c *Cache) syncAll(since int64) {
	for _, t := range c.peers() {
		c.syncLater(returning{target: t, since: since})
	}
}

// heir is the receiving side's state.
type heir struct {
	c     *Cache
	br    *bufio.Reader
	start time.Time
	// purged is the purge log as a lateMatch, built at log generation gen.
	purged *lateMatch
	gen    uint64
}

// objects reads the stream up to its end of objects.
func (r *heir) objects() error {
	t, b, err := readFrame(r.br)
	if err != nil {
		return fmt.Errorf("sharedcache: cache stream: %w", unexpected(err))
	}
	var h streamHello
	if t != frameHello || msgpackx.Unmarshal(b, &h) != nil || h.Version != streamVersion {
		return fmt.Errorf("sharedcache: cache stream of another version (frame %q)", t)
	}
	for {
		t, b, err := readFrame(r.br)
		if err != nil {
			return fmt.Errorf("sharedcache: cache stream: %w", unexpected(err))
		}
		switch t {
		case framePurges:
			if err := r.applyPurges(b); err != nil {
				return err
			}
		case frameObject:
			var o streamObject
			if err := msgpackx.Unmarshal(b, &o); err != nil || o.Meta == nil || o.Len < 0 {
				return fmt.Errorf("sharedcache: cache stream: bad object frame")
			}
			if err := r.object(&o); err != nil {
				return err
			}
		case frameEnd:
			var e streamEnd
			msgpackx.Unmarshal(b, &e)
			r.c.inherit.update(func(st *InheritStats) { st.Offered = e.Objects })
			return nil
		default:
			return fmt.Errorf("sharedcache: cache stream: unknown frame %q", t)
		}
	}
}

// tail applies the purges that follow the objects, until the stream
// ends.
func (r *heir) tail() {
	for {
		t, b, err := readFrame(r.br)
		if err != nil || t != framePurges || r.applyPurges(b) != nil {
			return
		}
	}
}

func (r *heir) applyPurges(b []byte) error {
	var es []logEntry
	if err := msgpackx.Unmarshal(b, &es); err != nil {
		return fmt.Errorf("sharedcache: cache stream: bad purge frame: %w", err)
	}
	if err := r.c.checkEntries(es); err != nil {
		return err
	}
	// Applied as if missed: it drops what was requested before each
	// purge ran, also among the objects inherited already.
	_, applied := r.c.applyLate(es, 0)
	r.c.inherit.update(func(st *InheritStats) { st.Purges += applied })
	return nil
}

// object reads one object's body and stores the object, unless the key
// holds one already or a logged purge selects it.
func (r *heir) object(o *streamObject) error {
	c := r.c
	if o.Len > c.cfg.MaxObjectBytes {
		if _, err := io.CopyN(io.Discard, r.br, o.Len); err != nil {
			return fmt.Errorf("sharedcache: cache stream: %w", unexpected(err))
		}
		c.inherit.update(func(st *InheritStats) { st.Skipped++ })
		return nil
	}
	// The whole body first: a fill published before its body arrived
	// could leave a reader with a short body if the stream broke.
	var body [][]byte
	for left := o.Len; left > 0; {
		b := make([]byte, min(left, bodyBuf))
		if _, err := io.ReadFull(r.br, b); err != nil {
			return fmt.Errorf("sharedcache: cache stream: %w", unexpected(err))
		}
		body = append(body, b)
		left -= int64(len(b))
	}
	stored := r.store(o.Key, o.Meta.meta(), body)
	c.inherit.update(func(st *InheritStats) {
		if stored {
			st.Objects++
			st.Bytes += o.Len
		} else {
			st.Skipped++
		}
	})
	return nil
}

// errPurgedBefore ends the fill of an inherited object a purge selects.
var errPurgedBefore = errors.New("sharedcache: inherited object purged")

// store puts an inherited object in the local tier through a fill of
// its key: a purge that runs meanwhile dooms the fill (or, run before,
// is in the log checked under the fill), so nothing it selects is stored.
func (r *heir) store(key string, meta *cache.Meta, body [][]byte) bool {
	c := r.c
	if o, _ := c.local.Lookup(c.ctx, key); o != nil {
		return false // filled here since: newer
	}
	f, _, _ := c.local.Lock(c.ctx, key, 0)
	if f == nil {
		return false // a fill under way
	}
	if meta.RequestTime.UnixNano() < r.purgeMatch().at(key, meta) {
		f.Abort(errPurgedBefore)
		return false
	}
	if err := f.Start(meta, 0); err != nil {
		f.Abort(err)
		return false
	}
	for _, b := range body {
		f.Write(b)
	}
	return f.Commit() == nil
}

// purgeMatch returns the purge log as a lateMatch, rebuilt when the log
// changed.
func (r *heir) purgeMatch() *lateMatch {
	gen := r.c.plog.generation()
	if r.purged != nil && gen == r.gen {
		return r.purged
	}
	es, _ := r.c.plog.since(0)
	lm := newLateMatch(0)
	for _, e := range es {
		if m, err := e.compile(); err == nil {
			lm.add(m, e.At)
		}
	}
	r.purged, r.gen = lm, gen
	return lm
}
