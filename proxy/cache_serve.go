package proxy

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// cacheStatus is what the Cache-Status field says about a request (RFC
// 9211): a hit, or why and how it went forward.
type cacheStatus struct {
	hit       bool
	fwd       string // bypass, method, miss, vary-miss, request, stale
	fwdStatus int
	stored    bool
	collapsed bool
	hasTTL    bool
	ttl       time.Duration
	detail    string
}

// String is the field's parameters, without the cache's name.
func (st *cacheStatus) String() string { return string(st.appendTo(nil)) }

func (st *cacheStatus) appendTo(b []byte) []byte {
	if st.hit {
		b = append(b, "hit"...)
	} else {
		b = append(append(b, "fwd="...), st.fwd...)
		if st.fwdStatus > 0 {
			b = strconv.AppendInt(append(b, "; fwd-status="...), int64(st.fwdStatus), 10)
		}
	}
	if st.hasTTL {
		b = strconv.AppendInt(append(b, "; ttl="...), int64(st.ttl/time.Second), 10)
	}
	if st.stored {
		b = append(b, "; stored"...)
	}
	if st.collapsed {
		b = append(b, "; collapsed"...)
	}
	if st.detail != "" {
		b = append(append(b, "; detail="...), st.detail...)
	}
	return b
}

// setCacheStatus adds the Cache-Status field to h, unless the route turned
// it off, and keeps its parameters in Session.CacheStatus. h may be a map
// the upstream connection owns: the value gets a slice of its own.
func (s *Server[C]) setCacheStatus(sess *Session, h http.Header) {
	if v, ok := s.cacheStatusField(sess); ok {
		h["Cache-Status"] = []string{v}
	}
}

// cacheStatusField returns the Cache-Status value, and false when the
// route turned the field off; it records the parameters in
// Session.CacheStatus.
func (s *Server[C]) cacheStatusField(sess *Session) (string, bool) {
	cs := &sess.cache
	name := cs.cfg.statusName()
	hd := sess.head()
	b := append(hd.buf[:0], name...)
	b = cs.st.appendTo(append(b, "; "...))
	hd.buf = b
	v := string(b)
	sess.CacheStatus = v[len(name)+2:]
	return v, name != "off"
}

// cacheHead holds what a session reuses to send responses from the
// cache, request after request: the head, a copy of the stored fields,
// and backing for the fields the cache sets.
type cacheHead struct {
	resp ResponseHeader
	vals []string
	one  [slots][1]string
	buf  []byte
	// blocks holds the slices of a stored body sendHeld sends
	blocks [][]byte
}

// Slots of cacheHead.one, one per field the cache sets.
const (
	slotAge = iota
	slotStatus
	slotLength
	slotRange
	slots
)

func (s *Session) head() *cacheHead {
	if s.cacheHead == nil {
		s.cacheHead = &cacheHead{}
	}
	return s.cacheHead
}

// load returns a copy of src in the reused map: a phase may change it, and
// the stored head stays as it was.
func (hd *cacheHead) load(src http.Header) http.Header {
	h := hd.resp.Header
	if h == nil || len(h) > 64 {
		h = make(http.Header, len(src)+4)
	} else {
		clear(h)
	}
	n := 0
	for _, v := range src {
		n += len(v)
	}
	if cap(hd.vals) < n {
		hd.vals = make([]string, 0, n)
	}
	vals := hd.vals[:n]
	i := 0
	for k, v := range src {
		j := i + copy(vals[i:], v)
		h[k] = vals[i:j:j]
		i = j
	}
	hd.resp.Header = h
	return h
}

// set sets field k of h to v, backed by slot.
func (hd *cacheHead) set(h http.Header, k, v string, slot int) {
	hd.one[slot][0] = v
	h[k] = hd.one[slot][:]
}

// errUnreadable is returned by serveCached when the object's body cannot
// be read (its fill failed) before anything was sent: the request then
// goes to the origin.
var errUnreadable = errors.New("proxy: cached body unreadable")

// serveStored answers the request from obj, as result says (a hit, a stale
// hit, or a collapsed request), or reports done=false when obj turned out
// unreadable so the request goes to the origin uncached.
func (s *Server[C]) serveStored(sess *Session, ctx C, obj cache.Object, result, detail string) (bool, error) {
	cs := &sess.cache
	prev, prevResult := cs.st, cs.result
	cs.result = result
	if result == cacheCollapsed {
		cs.st.collapsed = true
		if cs.st.fwd == "" || cs.st.fwd == "bypass" {
			cs.st.fwd = "miss"
		}
	} else {
		cs.st.hit, cs.st.detail = true, detail
	}
	err := s.serveCached(sess, ctx, obj, obj.Meta())
	if errors.Is(err, errUnreadable) {
		cs.st, cs.result = prev, prevResult
		cs.st.detail = "fill-failed"
		return false, nil
	}
	return true, err
}

// serveCached sends the stored response obj with head meta: its fields,
// Age and Cache-Status, in the form the request asks for (304 for its
// preconditions, 206 for one range, no body for HEAD), through
// ResponseFilter and ResponseBodyFilter.
func (s *Server[C]) serveCached(sess *Session, ctx C, obj cache.Object, meta *cache.Meta) error {
	cs := &sess.cache
	v := cache.Check(meta, cs.rq, s.clock.Now())
	if cs.st.hit {
		cs.st.ttl, cs.st.hasTTL = v.TTL, true
	}
	hd := sess.head()
	resp := &hd.resp
	resp.Status = meta.Status
	hd.set(hd.load(meta.Header), "Age", cache.Seconds(v.Age), slotAge)
	off, n := cachedView(sess.Req, obj, hd)
	if v, ok := s.cacheStatusField(sess); ok {
		hd.set(resp.Header, "Cache-Status", v, slotStatus)
	}
	var rd cache.Reader
	if n != 0 && sess.Req.Method != http.MethodHead {
		r, err := obj.NewReader(sess.ctx, off)
		if err != nil {
			return errUnreadable
		}
		rd = r
		defer rd.Close()
	}
	held := false
	if br, ok := rd.(cache.BlockReader); ok && obj.Len() >= 0 && s.ph.responseBody == nil {
		// The whole body is held and no filter rewrites it: it is sent
		// from the store's blocks, without copying it through a buffer.
		// A reader that cannot have them all (a relay cut it off) fails
		// here, before the phases see a head that will not go out.
		var err error
		if hd.blocks, err = br.Blocks(hd.blocks[:0], n); err != nil {
			hd.dropBlocks()
			return errUnreadable
		}
		held = true
		defer hd.dropBlocks()
	}
	if err := s.filterResponse(sess, resp); err != nil {
		return err
	}
	if held {
		if err := s.sendHeld(sess, resp); err != nil {
			return err
		}
	} else {
		if err := sess.ds.writeHead(resp); err != nil {
			return classifyIO(err, Downstream)
		}
		sess.Status = resp.Status
		if rd != nil {
			if err := s.copyCached(sess, ctx, rd, n); err != nil {
				return err
			}
		}
	}
	if err := sess.ds.finish(nil); err != nil {
		sess.ds.abort()
		return classifyIO(err, Downstream)
	}
	return nil
}

// cachedView shapes resp for the request: 304 when its preconditions
// match (RFC 9111 §4.3.2), 206 or 416 for one range of a 200 whose length
// is known (RFC 9110 §14), else the whole response. It returns the body's
// offset and length to send (-1: to the end; 0: none).
func cachedView(req *RequestHeader, obj cache.Object, hd *cacheHead) (off, n int64) {
	resp := &hd.resp
	h := resp.Header
	size := obj.Len()
	if size < 0 {
		size = contentLength(h)
	}
	switch {
	case cache.NotModified(req.Header, resp.Status, h):
		resp.Status, resp.Header = http.StatusNotModified, cache.NotModifiedHeader(h)
		return 0, 0
	case resp.Status == http.StatusOK && size >= 0 && len(req.Header["Range"]) == 1 && len(req.Header["If-Range"]) <= 1 && cache.IfRangeHolds(req.Header.Get("If-Range"), h):
		r, kind := cache.ParseRange(req.Header.Get("Range"), size)
		switch kind {
		case cache.RangeOne:
			resp.Status = http.StatusPartialContent
			hd.set(h, "Content-Range", r.ContentRange(size), slotRange)
			hd.set(h, "Content-Length", strconv.FormatInt(r.Length, 10), slotLength)
			return r.Start, r.Length
		case cache.RangeUnsatisfiable:
			resp.Status = http.StatusRequestedRangeNotSatisfiable
			hd.set(h, "Content-Range", "bytes */"+strconv.FormatInt(size, 10), slotRange)
			hd.set(h, "Content-Length", "0", slotLength)
			return 0, 0
		}
	}
	if size >= 0 {
		hd.set(h, "Content-Length", strconv.FormatInt(size, 10), slotLength)
	}
	return 0, -1
}

// contentLength is h's Content-Length, -1 when absent or invalid.
func contentLength(h http.Header) int64 {
	v := h["Content-Length"]
	if len(v) != 1 {
		return -1
	}
	n, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// heldWriter is a downstream that sends a response whose body is held in
// memory in a way of its own (HTTP/1.1: one gathered write of head and
// body). The blocks are read-only and stay valid after the call.
type heldWriter interface {
	writeHeld(resp *ResponseHeader, blocks [][]byte) error
}

// dropBlocks lets go of the stored blocks a response was sent from.
func (hd *cacheHead) dropBlocks() {
	clear(hd.blocks) // keep no stored block alive
	hd.blocks = hd.blocks[:0]
}

// sendHeld sends resp and the body in hd.blocks: slices of a body the
// store holds whole in memory.
func (s *Server[C]) sendHeld(sess *Session, resp *ResponseHeader) error {
	hd := sess.head()
	var size int64
	for _, b := range hd.blocks {
		size += int64(len(b))
	}
	var err error
	if hw, ok := sess.ds.(heldWriter); ok {
		err = hw.writeHeld(resp, hd.blocks)
		sess.Status = resp.Status
	} else {
		if err := sess.ds.writeHead(resp); err != nil {
			return classifyIO(err, Downstream)
		}
		sess.Status = resp.Status
		for _, b := range hd.blocks {
			if err = sess.ds.write(b); err != nil {
				break
			}
		}
	}
	if err != nil {
		sess.ds.abort()
		return classifyIO(err, Downstream)
	}
	sess.BytesOut += size
	s.metrics.cache.bytesServed.Add(float64(size))
	return nil
}

// copyCached streams n bytes of a stored body (-1: all) to the client
// through the body filter, flushing only before a read would wait for a
// fill. A body that breaks cuts the client's response.
func (s *Server[C]) copyCached(sess *Session, ctx C, rd cache.Reader, n int64) error {
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	bf := s.ph.responseBody
	for {
		p := buf
		if n >= 0 && n < int64(len(p)) {
			p = p[:n]
		}
		k, err := rd.Read(p)
		if n >= 0 {
			n -= int64(k)
		}
		// Only io.EOF itself ends the body: a failure that wraps it (a
		// cluster stream whose owner's connection closed) is a cut.
		eof := err == io.EOF || n == 0
		if err != nil && !eof {
			sess.ds.abort()
			return classifyIO(err, Upstream)
		}
		chunk := p[:k]
		if bf != nil && (k > 0 || eof) {
			if chunk, err = bf.ResponseBodyFilter(sess, chunk, eof, ctx); err != nil {
				sess.ds.abort()
				return err
			}
		}
		if len(chunk) > 0 {
			if err := sess.ds.write(chunk); err != nil {
				sess.ds.abort()
				return classifyIO(err, Downstream)
			}
			sess.BytesOut += int64(len(chunk))
			s.metrics.cache.bytesServed.Add(float64(len(chunk)))
		}
		if eof {
			return nil
		}
		if rd.Buffered() == 0 {
			if err := sess.ds.flush(); err != nil {
				sess.ds.abort()
				return classifyIO(err, Downstream)
			}
		}
	}
}
