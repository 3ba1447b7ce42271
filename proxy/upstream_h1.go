package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pingora-go/pingora-go/proxy/h1"
)

// upConn is an HTTP/1.1 connection to an upstream peer.
type upConn struct {
	nc        net.Conn
	rc        syscall.RawConn // of the TCP socket under TLS, for the liveness peek
	peek      peeker          // on rc
	tlsUnder  *tlsUnder       // the socket under TLS, whose buffers are looked at too
	key       string
	br        *bufio.Reader
	bw        *bufio.Writer
	reader    *h1.Reader
	body      *h1.Body
	resp      h1.Response
	dl        deadlines
	idleSince time.Duration // monoNow when pooled
	// aborted: Session.abortUpstream took this connection while it waited
	// and may set its read deadline at any time after: it is never pooled.
	aborted bool
}

func newUpConn(nc net.Conn, key string) *upConn {
	c := upConnPool.Get().(*upConn)
	c.nc, c.key = nc, key
	raw := nc
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok {
		raw = u.NetConn()
		c.tlsUnder, _ = raw.(*tlsUnder)
	}
	if pc, ok := raw.(peekRawConner); ok {
		c.rc = pc.peekRawConn()
	} else if sc, ok := raw.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	c.peek.init(c.rc)
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(nc)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(nc)
	if c.reader == nil {
		c.reader = h1ReaderPool.Get().(*h1.Reader)
		c.body = h1.NewBody(c.reader)
	}
	c.reader.Reset(c.br, h1.Limits{MaxHeaderBytes: maxUpstreamHeadBytes, MaxHeaders: 512})
	return c
}

// upConnPool recycles the upConns that close ends, with their head
// parser, body reader and response header map (which the parser clears
// before each response): with a new upstream connection per request (an
// origin that closes after each response) they were six allocations of
// each request. What may still refer to a closed upConn is never
// recycled: one an aborted wait took (abortUpstream sets its read deadline
// at any time after) and one a tunnel hijacked (close is never called).
var upConnPool = sync.Pool{New: func() any { return new(upConn) }}

// close closes the connection and returns its buffers to the pools the
// client connections' come from, and itself to upConnPool. The caller
// owns c and nothing uses it afterwards, as when it pools c (the next
// request may take a pooled connection at once): the exchange has
// released it, its body writer has returned, and a tunnel took its
// connection and reader (hijack) instead; the response head the exchange
// gave out (ResponseHeader's map and value slices) is no longer read, as
// ResponseHeader says. Once per connection; nc.Close alone is for waking
// a reader or writer that still runs.
func (c *upConn) close() {
	if c.nc == nil {
		return // closed and recycled, not yet taken again: nothing to close
	}
	c.nc.Close()
	if c.br == nil {
		return // closed before
	}
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.bw.Reset(nil)
	writerPool.Put(c.bw)
	if c.aborted {
		h1ReaderPool.Put(c.reader)
		c.br, c.bw, c.reader, c.body = nil, nil, nil, nil
		return
	}
	c.reader.Reset(nil, h1.Limits{})
	h := c.resp.Header
	if len(h) > 64 {
		h = nil // a rare head's large map is not kept
	}
	clear(h) // nothing of the last response stays reachable
	*c = upConn{reader: c.reader, body: c.body, resp: h1.Response{Header: h}}
	upConnPool.Put(c)
}

// aliveAt peeks at an idle connection. A read deadline left from its last
// exchange that has passed would fail the peek itself: it is cleared first.
// Over TLS, bytes already read off the socket (whole records after the
// response) are looked for too: the peek at the socket cannot see them.
func (c *upConn) aliveAt(now time.Duration) bool {
	if c.tlsUnder != nil {
		if tc, ok := c.nc.(*tls.Conn); ok && c.tlsUnder.tlsBuffered(tc) {
			return false
		}
	}
	if c.rc == nil {
		return true
	}
	if c.dl.readPassed(now) {
		c.dl.setRead(c.nc, time.Time{})
	}
	return c.peek.alive()
}

// peekRawConner is a connection whose raw connection can be had for
// calls that never wait (the pool's peek): SyscallConn is for a caller
// that may wait through it, for which a tcpConn sets its deadlines on the
// poller as they are set from then on (splice), where they are otherwise
// set only when an operation waits (lazyDeadline).
type peekRawConner interface {
	peekRawConn() syscall.RawConn
}

// h1Exchange is one request/response on an upConn.
type h1Exchange struct {
	srv      *pool
	c        *upConn
	t        UpstreamTimeouts
	writeErr chan error // the body writer's result; nil when the body was written inline
	ds       downstream // whose body the writer reads
	wErr     error
	wDone    bool
	reusable bool
	slot     *peerSlots // the peer's connection slot, freed with the connection (nil: uncapped)
}

// h1RoundTrip sends req (and body) to peer over a pooled or new connection
// and reads the response head into out.
//
// A pooled connection is peeked at before it is used (see pool.get). One
// the upstream closed just after the peek fails at once: the write is
// refused or the read sees the close before any response byte. Such a
// request is sent again on a new connection, once, without spending the
// retry budget, when that is safe: the method is idempotent and the body
// can be replayed (Go's Transport and nginx do the same).
func (s *Server[C]) h1RoundTrip(sess *Session, peer *Peer, req *RequestHeader, body *reqBody, out *ResponseHeader) (*h1Exchange, error) {
	t := peer.Timeouts.withDefaults(s.cfg.Upstream)
	key := peer.poolKey()
	resend := idempotent(req.Method) && body.complete()
	c := s.pool.get(key)
	for {
		reused := c != nil
		sess.ConnReused, sess.ConnectTime = reused, 0
		if c == nil {
			start := time.Now()
			nc, err := s.dialer.dial(sess.ctx, peer, t, "http/1.1")
			if err != nil {
				return nil, err
			}
			sess.ConnectTime = time.Since(start)
			c = newUpConn(nc, key)
			s.metrics.connsCreated.Inc()
		} else {
			s.metrics.connsReused.Inc()
		}
		// The session's own: an attempt's exchange is released (its
		// body writer waited for) before the next one starts, and
		// nothing refers to it after its request.
		ex := &sess.h1x
		*ex = h1Exchange{srv: s.pool, c: c, t: t}
		err := ex.send(sess, req, body)
		if err == nil {
			err = ex.readHead(sess, req.Method, out)
		}
		if err == nil {
			return ex, nil
		}
		closedIdle := reused && resend && c.br.Buffered() == 0 && closedBeforeResponse(err)
		ex.release(false)
		if !closedIdle || sess.ctx.Err() != nil || !body.rewind() {
			return nil, err
		}
		c = nil
	}
}

// closedBeforeResponse reports whether err is a connection closed or reset
// by the upstream with no response byte read.
func closedBeforeResponse(err error) bool {
	var pe *Error
	if !errors.As(err, &pe) || pe.Kind != KindConnectionClosed || pe.Source != Upstream {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// send writes the request head, and the body inline when it is already in
// memory, else from a goroutine so the response can arrive while the body
// still streams (an upstream may answer early, say 413).
func (ex *h1Exchange) send(sess *Session, req *RequestHeader, body *reqBody) error {
	c := ex.c
	h := req.Header
	delete(h, "Transfer-Encoding")
	chunked := false
	switch cl := sess.ds.contentLength(); {
	case body.has && cl >= 0:
		h["Content-Length"] = []string{strconv.FormatInt(cl, 10)}
	case body.has:
		delete(h, "Content-Length")
		h["Transfer-Encoding"] = chunkedTE
		chunked = true
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		h["Content-Length"] = zeroCL
	}
	c.dl.refreshWrite(c.nc, ex.t.WriteIdle)
	if err := h1.WriteRequestHead(c.bw, req.Method, req.URI, req.Host, h); err != nil {
		return unwritable(err) // nothing was written: the connection closes unused
	}
	if !body.has {
		// The answer comes after the request: the read that waits for
		// it sends the request (see sockIO.holdNextWrite).
		if h, ok := c.nc.(writeHolder); ok {
			h.holdNextWrite()
		}
		return ex.flush(c)
	}
	if body.complete() {
		err := writeBody(c, ex.t, body, chunked, sess.ds)
		ex.wDone, ex.wErr = true, err
		if err != nil {
			return err
		}
		return nil
	}
	done := make(chan error, 1) // the writer never blocks on sending its result
	ex.writeErr, ex.ds = done, sess.ds
	t, ds := ex.t, sess.ds // the writer reads neither ex nor sess, the session's to reuse
	go func() {
		err := writeBody(c, t, body, chunked, ds)
		var pe *Error
		if errors.As(err, &pe) && pe.Source == Downstream && !interrupted(err) {
			c.nc.Close() // the upstream must not see a complete request; wakes the reader
		}
		done <- err
	}()
	return nil
}

var (
	chunkedTE = []string{"chunked"}
	zeroCL    = []string{"0"}
)

func (ex *h1Exchange) flush(c *upConn) error {
	if err := c.bw.Flush(); err != nil {
		return &Error{Kind: KindConnectionClosed, Source: Upstream, Retry: true, Err: err}
	}
	return nil
}

// writeBody copies the request body to the upstream, chunked if needed, and
// flushes. Errors reading the client are marked Downstream.
func writeBody(c *upConn, t UpstreamTimeouts, body *reqBody, chunked bool, ds downstream) error {
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	var w io.Writer = c.bw
	cw := h1.ChunkWriter{W: c.bw}
	if chunked {
		w = cw
	}
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			c.dl.refreshWrite(c.nc, t.WriteIdle)
			if _, err := w.Write(buf[:n]); err != nil {
				return &Error{Kind: KindConnectionClosed, Source: Upstream, Retry: true, Err: err}
			}
			if body.pos >= len(body.kept) && !body.eof {
				if err := c.bw.Flush(); err != nil {
					return &Error{Kind: KindConnectionClosed, Source: Upstream, Retry: true, Err: err}
				}
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return classifyIO(rerr, Downstream)
		}
	}
	if chunked {
		cw.Close(requestTrailer(ds))
	}
	if err := c.bw.Flush(); err != nil {
		return &Error{Kind: KindConnectionClosed, Source: Upstream, Retry: true, Err: err}
	}
	return nil
}

// errInterimFlood fails a request whose HTTP/1.1 upstream sent interim
// (1xx) responses past maxUpstreamHeadBytes before its final one.
var errInterimFlood = errors.New("proxy: upstream interim (1xx) responses over the head allowance")

// readHead reads the response head, skipping interim 1xx responses other
// than 101.
func (ex *h1Exchange) readHead(sess *Session, method string, out *ResponseHeader) error {
	c := ex.c
	c.dl.refreshRead(c.nc, ex.t.ResponseHeader)
	// A client that goes away while the upstream thinks ends the wait:
	// the connection is cut (it never returns to the pool).
	sess.upWait.Store(c)
	defer func() {
		if !sess.upWait.CompareAndSwap(c, nil) {
			// abortUpstream swapped it out: its deadline may be set in
			// the past even after this response was read whole.
			c.aborted = true
		}
	}()
	if sess.ctx.Err() != nil {
		return newError(KindClientCanceled, Downstream, context.Cause(sess.ctx))
	}
	interim := 0 // bytes of the interim heads read so far
	for {
		err := c.reader.ReadResponse(&c.resp, method)
		if err != nil {
			if cause := context.Cause(sess.ctx); cause != nil {
				return newError(KindClientCanceled, Downstream, cause)
			}
			return ex.headError(err)
		}
		if c.resp.Status >= 200 || c.resp.Status == http.StatusSwitchingProtocols {
			break
		}
		// The interim heads share one head allowance: each is small, and
		// an origin that sent them without end was read until the
		// response header timeout (13 GB of 100 Continue in a minute).
		if interim += c.reader.HeadLen(); interim > maxUpstreamHeadBytes {
			return newError(KindInvalidResponse, Upstream, errInterimFlood)
		}
	}
	c.body.ResetResponse(&c.resp)
	out.Status, out.Header = c.resp.Status, c.resp.Header
	return nil
}

// headError classifies a failure to read the response head. A connection
// that closed or reset before any byte of the response may be retried: the
// upstream did not answer (often a pooled connection it had just closed).
func (ex *h1Exchange) headError(err error) error {
	if we := ex.writerError(false); we != nil {
		var pe *Error
		if errors.As(we, &pe) && pe.Source == Downstream {
			return we
		}
	}
	var he *h1.ParseError
	switch {
	case errors.As(err, &he):
		return newError(KindInvalidResponse, Upstream, err)
	case isTimeout(err):
		return newError(KindReadTimeout, Upstream, err)
	case errors.Is(err, context.Canceled):
		return newError(KindClientCanceled, Downstream, err)
	}
	return &Error{Kind: KindConnectionClosed, Source: Upstream, Retry: true, Err: err}
}

// writerError returns the body writer's error; with wait it waits for the
// writer to finish.
func (ex *h1Exchange) writerError(wait bool) error {
	if ex.wDone || ex.writeErr == nil {
		return ex.wErr
	}
	if wait {
		ex.wErr, ex.wDone = <-ex.writeErr, true
		return ex.wErr
	}
	select {
	case ex.wErr = <-ex.writeErr:
		ex.wDone = true
	default:
	}
	return ex.wErr
}

func (ex *h1Exchange) read(p []byte) (int, error) {
	ex.c.dl.refreshRead(ex.c.nc, ex.t.ReadIdle)
	n, err := ex.c.body.Read(p)
	if err == nil && ex.c.body.Done() {
		// The last bytes come with EOF: the engine then ends the response
		// with them, rather than flushing them alone first (one write to
		// the client instead of two, one TLS record instead of two).
		err = io.EOF
	}
	return n, err
}

func (ex *h1Exchange) buffered() int { return ex.c.body.Buffered() }

// ahead: a body framed by Content-Length whose rest fits in room, or one
// whose next data or end (chunked) is already in the read buffer.
func (ex *h1Exchange) ahead(room int) bool {
	b := ex.c.body
	if left := b.LengthLeft(); left >= 0 {
		return left <= int64(room)
	}
	return b.Buffered() > 0 || b.EndBuffered()
}

func (ex *h1Exchange) trailer() http.Header { return ex.c.body.Trailer() }

// release ends the exchange: the connection goes back to the pool when the
// response was read to its end, the request was fully written and the
// upstream did not ask to close; otherwise it is closed.
//
// A body writer still running (the upstream answered before it took the
// whole body, or failed) is stopped and waited for: its write to the
// upstream fails on the closed connection, and its read of the client is
// woken (interruptBody). The response, a 413 say, then goes to the client
// at once: it waited for a client that had stopped sending until its read
// timed out (ReadIdleTimeout). The rest of the body is the engine's to
// drain or replay (endRequest, rewind).
func (ex *h1Exchange) release(ok bool) {
	if ex.c == nil {
		return
	}
	c := ex.c
	ex.c = nil
	if ex.writeErr != nil && !ex.wDone {
		select {
		case ex.wErr = <-ex.writeErr:
			ex.wDone = true
		default:
			ok = false
			c.nc.Close() // fails the writer's upstream write
			ex.ds.interruptBody()
			ex.writerError(true)
			ex.ds.resumeBody()
		}
	}
	if ok && ex.wErr == nil && c.body.Done() && !c.resp.Close && c.br.Buffered() == 0 && !c.aborted {
		ex.srv.put(c) // its read deadline stays: the pool handles it (see get)
	} else {
		c.close()
	}
	ex.freeSlot()
}

// stopBody: see exchange. The writer's upstream write fails at a past
// write deadline, its client read is woken: the connection still reads
// the response, and is closed after it (wErr).
func (ex *h1Exchange) stopBody() {
	if ex.writeErr == nil || ex.wDone {
		return
	}
	select {
	case ex.wErr = <-ex.writeErr:
		ex.wDone = true
		return
	default:
	}
	ex.c.nc.SetWriteDeadline(time.Unix(1, 0))
	ex.ds.interruptBody()
	if ex.writerError(true) == nil {
		// It wrote the whole body after all, but the connection's write
		// deadline is now past: it is not pooled either.
		ex.wErr = errBodyInterrupted
	}
	ex.ds.resumeBody()
}

// freeSlot frees the peer's connection slot the exchange holds, once.
func (ex *h1Exchange) freeSlot() {
	if ex.slot != nil {
		ex.slot.release()
		ex.slot = nil
	}
}

// hijack hands the raw connection over (for an upgraded tunnel); the
// exchange no longer owns it, but keeps its connection slot until the
// tunnel calls freeSlot.
func (ex *h1Exchange) hijack() (net.Conn, *bufio.Reader) {
	c := ex.c
	ex.c = nil
	c.dl.setRead(c.nc, time.Time{})
	return c.nc, c.br
}
