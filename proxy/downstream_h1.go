package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/proxy/h1"
)

// h1Downstream is the client side of HTTP/1.1 requests on one connection;
// it is reused for every request on it.
type h1Downstream struct {
	c      *clientConn
	cfg    *DownstreamConfig
	reader *h1.Reader
	req    h1.Request
	rh     RequestHeader
	hb     *h1.Body
	in     h1BodyReader
	dl     deadlines

	// the client watch (see startWatch)
	cancelConn context.CancelCauseFunc
	watchTimer *time.Timer
	watchMu    sync.Mutex
	watchState int       // watchIdle, watchArmed, watchRunning; guarded by watchMu
	watchSess  *Session  // guarded by watchMu
	watchSince time.Time // the watched request's start; guarded by watchMu
	// watchTimerSet: the timer is pending; guarded by watchMu
	watchTimerSet bool
	watchWG       sync.WaitGroup
	watchStop     atomic.Bool

	// response state, reset per request
	headSent  bool
	chunked   bool
	noBody    bool
	declared  int64 // the body's declared length (Content-Length), -1 if none; checked also when it goes chunked
	trailers  bool  // the body may end with trailers the client accepts: chunked, never Content-Length
	written   int64
	keepAlive bool
	broken    bool // the connection must close: framing is unknown
	// writeHeld's list of buffers, reused, and the part of it not sent yet
	// (a field: as a local it would escape to the heap)
	iov [][]byte
	out net.Buffers

	// linger: the connection closes while the client may still be sending;
	// close it with lingerClose
	linger bool
	// lingerUntil ends the lingering close when it began before lingerClose
	// (endRequest's drain of an unread body); zero: it begins there
	lingerUntil time.Time

	// intr: the body's reader is interrupted (interruptBody)
	intr atomic.Bool

	// pipelined: the next request's head was already read when this
	// (bodiless) one began
	pipelined bool

	// slow counts and logs a client cut for a minimum rate (slowClient)
	slow func(listener, client, proto, dir string)

	served int // requests read on the connection (including one refused)

	// sm holds responses to the minimum send rate at the socket: smv,
	// when the connection's socket counts (attachSendMeter), else nil
	sm  *sendMeter
	smv sendMeter
}

// serveH1 is the HTTP/1.1 connection loop.
// statemachine: idle (waiting for a request's first byte, keep-alive or
// drain deadline) -> head (header timeout) -> request (phases, body) ->
// idle again, or closed when either side asks, framing broke, or draining.
func (s *Server[C]) serveH1(c *clientConn) {
	st := new(h1ConnState)
	d := &st.d
	d.c, d.cfg = c, &s.cfg.Downstream
	d.slow = s.slowClientFn
	if d.cfg.MinSendRate > 0 {
		d.smv = sendMeter{clk: s.clock, grace: d.cfg.MinRateGrace, rate: d.cfg.MinSendRate, conn: c.raw,
			slow: d.slow, listener: c.lc.Name, client: c.clientIP}
		if attachSendMeter(c.raw, &d.smv) {
			d.sm = &d.smv
		}
	}
	d.reader = h1ReaderPool.Get().(*h1.Reader)
	d.reader.Reset(c.br, h1.Limits{MaxHeaderBytes: d.cfg.MaxHeaderBytes, MaxHeaders: d.cfg.MaxHeaders})
	defer h1ReaderPool.Put(d.reader) // nothing reads the connection after serveH1 (its bufio.Reader goes back to a pool too)
	st.hb = *h1.NewBody(d.reader)
	d.hb = &st.hb
	d.in = h1BodyReader{d: d}
	sess := &st.sess
	sess.ClientIP, sess.TLS, sess.Listener = c.clientIP, c.tls, c.lc.Name
	d.req.Header, sess.upReq.Header = getHeader(), getHeader()
	defer func() {
		putHeader(d.req.Header)
		putHeader(sess.upReq.Header)
	}()
	baseCtx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	d.cancelConn = cancel
	defer func() {
		if d.watchTimer != nil {
			d.watchTimer.Stop()
		}
	}()
	first := true
	for {
		if !d.waitRequest(first) {
			return
		}
		// A head already whole in the buffer needs no header timeout
		// (most requests); the deadline left from waiting is harmless
		// while the request runs: a body read or the watch sets its own.
		// The first request waited under the header timeout already.
		if !first && !headBuffered(c.br) {
			d.dl.setRead(c.nc, time.Now().Add(d.cfg.HeaderTimeout))
		}
		first = false
		d.served++
		err := d.reader.ReadRequest(&d.req)
		if err != nil {
			s.rejectH1(d, sess, err)
			if d.linger {
				d.lingerClose()
			}
			return
		}
		now := time.Now()
		d.startRequest(sess, baseCtx)
		// Bodiless requests are watched for a client that leaves (a
		// tunnel reads the client itself).
		watched := !d.hb.HasBody() && len(d.req.Header["Upgrade"]) == 0 && d.req.Method != http.MethodConnect
		// Read before the watch may: it peeks at the connection meanwhile.
		d.pipelined = watched && headBuffered(c.br)
		if watched {
			d.startWatch(sess, now)
		}
		s.handle(sess, now)
		if watched {
			d.stopWatch()
		}
		if !d.endRequest() {
			if d.linger {
				d.lingerClose()
			}
			return
		}
	}
}

// h1ConnState is what an HTTP/1.1 client connection holds for its life,
// in one allocation rather than three: its downstream, the session its
// requests run in one after another, and its body reader. Nothing is
// pooled: a phase that kept the *Session keeps the rest from the
// collector with it, and nothing else.
type h1ConnState struct {
	d    h1Downstream
	sess Session
	hb   h1.Body
}

// h1ReaderPool holds the head parsers of finished HTTP/1.1 connections,
// with the buffers they grew.
var h1ReaderPool = sync.Pool{New: func() any { return h1.NewReader(nil, h1.Limits{}) }}

// headerPool holds the header maps of finished HTTP/1.1 connections (the
// request's and its upstream copy), each sized for a typical request: a new
// connection per request otherwise grows two maps from nothing.
var headerPool = sync.Pool{New: func() any { return make(http.Header, 24) }}

func getHeader() http.Header { return headerPool.Get().(http.Header) }

func putHeader(h http.Header) {
	if h == nil || len(h) > 64 { // an unusually large map is left to the GC
		return
	}
	clear(h)
	headerPool.Put(h)
}

// waitFirstAfter is how many requests a connection carries before the
// wait for its next one waits first (see waitRequest): a client that
// half-closes with one of its first waitFirstAfter requests is closed at
// once.
const waitFirstAfter = 2

// waitRequest waits for the first byte of the next request. It reports
// false when the connection should close: the client closed it, the idle
// timeout passed, or the server is draining and the linger passed.
func (d *h1Downstream) waitRequest(first bool) bool {
	c := d.c
	c.state.Store(connIdle)
	now := monoNow()
	dd := c.drainDeadline()
	if first || !dd.IsZero() {
		wait := d.cfg.KeepAliveTimeout
		if first {
			wait = d.cfg.HeaderTimeout
		}
		deadline := clockBase.Add(now + wait)
		if first && !c.headDeadline.IsZero() {
			deadline = c.headDeadline // set on the socket already
		}
		if !dd.IsZero() && dd.Before(deadline) {
			deadline = dd
		}
		if deadline.Equal(c.headDeadline) {
			d.dl.adoptRead(deadline)
		} else {
			d.dl.setRead(c.nc, deadline)
		}
	} else {
		d.dl.refreshReadAt(c.nc, now, d.cfg.KeepAliveTimeout)
	}
	if dd := c.drainDeadline(); !dd.IsZero() && dd.Sub(clockBase) < d.dl.read {
		d.dl.setRead(c.nc, dd) // shutdown began while we set the deadline
	}
	// On a connection that has carried a few requests the next one
	// nearly always comes later: the read waits for it first instead of
	// learning EAGAIN (sockIO.waitFirstNext). A FIN that came with the
	// last request is then seen at the idle timeout, not at once, which
	// is why the waits after the first requests do not: a client that
	// half-closes after its request (nc, scripts) most often sends one.
	wf, _ := c.raw.(interface{ waitFirstNext(bool) })
	if wf != nil && d.served > waitFirstAfter && c.br.Buffered() == 0 {
		wf.waitFirstNext(true)
	} else {
		wf = nil
	}
	_, err := c.br.Peek(1)
	if wf != nil {
		wf.waitFirstNext(false) // unused when TLS had a record buffered
	}
	if err != nil {
		return false
	}
	c.state.Store(connActive)
	return true
}

// headBuffered reports whether br holds a whole request head.
func headBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n < 4 {
		return false
	}
	b, _ := br.Peek(n)
	return bytes.Contains(b, crlfcrlf)
}

var crlfcrlf = []byte("\r\n\r\n")

// rejectH1 answers a request whose head could not be read, then the
// connection closes. A client that closed or timed out between requests
// gets nothing.
func (s *Server[C]) rejectH1(d *h1Downstream, sess *Session, err error) {
	if errors.Is(err, io.EOF) {
		return
	}
	code, reason := h1.StatusOf(err), parseReason(err)
	if isTimeout(err) {
		code, reason = http.StatusRequestTimeout, reasonHeaderTimeout
	} else if errors.Is(err, h1.ErrUnexpectedEOF) {
		return
	}
	if reason != "" {
		s.rejected(d.c.lc.Name, d.c.clientIP, "HTTP/1.1", reason, err)
	}
	d.req.Minor = 1 // the version may not have been read; answer as HTTP/1.1
	d.req.Method = ""
	d.startRequest(sess, context.Background())
	d.keepAlive = false
	perr := &Error{Kind: KindInvalidRequest, Source: Downstream, Status: code, Err: err}
	sess.Start = time.Now()
	s.writeError(sess, code)
	// The rest of a head too large or malformed may still be on its way;
	// a client that timed out is not waited for.
	d.linger = code != http.StatusRequestTimeout
	s.observe(sess, perr)
	s.logRejected(sess, perr)
}

// startRequest resets the per-request state and the Session.
func (d *h1Downstream) startRequest(sess *Session, ctx context.Context) {
	r := &d.req
	d.rh.Method, d.rh.Host, d.rh.Header = r.Method, r.Host, r.Header
	d.rh.URI = r.Target
	if r.Target != "" && r.Target[0] != '/' && r.Target != "*" && r.Method != http.MethodConnect { // absolute-form
		d.rh.URI = r.Path
		if r.RawQuery != "" {
			d.rh.URI += "?" + r.RawQuery
		}
	}
	d.rh.URI = normalizeURI(d.rh.URI)
	d.rh.ProtoMajor, d.rh.ProtoMinor = 1, r.Minor
	if r.Header != nil {
		delete(r.Header, "Host")
		if len(r.Header["Connection"]) > 0 {
			dropConnectionNamed(r.Header)
		}
		if !d.c.trusted {
			dropForwarding(r.Header)
		}
	}
	d.headSent, d.chunked, d.noBody, d.broken, d.trailers, d.pipelined = false, false, false, false, false, false
	d.declared, d.written = -1, 0
	d.keepAlive = !r.Close
	d.in = h1BodyReader{d: d, minRate: d.cfg.MinRecvRate > 0 && !isGRPC(&d.rh)}
	// Per request: its response (and a 100 Continue before it) has its
	// own budget, as an HTTP/2 stream has.
	d.sm.reset(!isGRPC(&d.rh))
	d.hb.ResetRequest(r, 0)
	sess.reset(ctx, &d.rh, d)
	if d.c.trusted && r.Header != nil {
		sess.ForwardedIP = forwardedClient(d.c.lc.TrustedProxies, r.Header)
	}
}

// endRequest finishes a request: it reports whether the connection can
// carry another one, draining a small unread request body if needed.
func (d *h1Downstream) endRequest() bool {
	c := d.c
	if err := d.sendBuffered(); err != nil {
		return false
	}
	// A drain that began after the head went out does not end the
	// connection here: the client may already have sent its next request,
	// which the drain linger answers with "Connection: close".
	if d.broken {
		return false
	}
	if !d.keepAlive {
		// Unread body bytes, or a request pipelined behind this one, would
		// make the kernel answer our close with a reset.
		d.linger = !d.hb.Done() || c.br.Buffered() > 0
		return false
	}
	if d.hb.Done() {
		return true
	}
	d.linger = true
	if d.req.ExpectContinue && !d.in.started {
		return false // the client waits for 100 Continue and never sent the body
	}
	// The rest of the body (an upstream answered before it was sent: a 413,
	// say) is read and dropped so the connection can carry the next
	// request, within the time a lingering close gives the client, as
	// nginx discards a body under lingering_timeout. A client that sends
	// it slowly held the connection for ReadIdleTimeout (60s) before.
	const maxDrain = 256 << 10
	d.lingerUntil = d.lingerDeadline()
	if d.lingerUntil.IsZero() {
		return false
	}
	d.dl.setRead(c.nc, d.lingerUntil)
	n, err := io.Copy(io.Discard, io.LimitReader(d.hb, maxDrain))
	d.linger = !(err == nil && n < maxDrain && d.hb.Done())
	if !d.linger {
		d.lingerUntil = time.Time{}
	}
	return !d.linger
}

// lingerDeadline is when a lingering close that begins now ends:
// LingerTimeout on, at most DrainLinger while the server drains; zero when
// there is no time to linger.
func (d *h1Downstream) lingerDeadline() time.Time {
	linger := d.cfg.LingerTimeout
	if d.c.draining.Load() {
		linger = min(linger, d.cfg.DrainLinger)
	}
	if linger <= 0 {
		return time.Time{}
	}
	return time.Now().Add(linger)
}

// lingerClose shuts the write side of a connection whose client may still
// be sending, then reads and discards until the client closes its side,
// LingerTimeout passes, or the read side fails. Closing at once would make
// the kernel answer the client's next bytes with a reset, and a reset can
// destroy the response before the client reads it. It is bounded in time
// whatever the client does, and shorter while the server drains; it ends
// with a drain of the body that began before it (lingerUntil), not a
// LingerTimeout later.
func (d *h1Downstream) lingerClose() {
	c := d.c
	if err := d.sendBuffered(); err != nil {
		return
	}
	until := d.lingerUntil
	if until.IsZero() {
		until = d.lingerDeadline()
	}
	if until.IsZero() || !time.Now().Before(until) {
		return
	}
	closeWrite(c.nc)
	d.dl.setRead(c.nc, until)
	c.br.Discard(c.br.Buffered())
	// Read through the connection's buffer: its 4 KiB is enough, and
	// discarding allocates nothing.
	for {
		if _, err := c.br.Discard(c.br.Size()); err != nil {
			return
		}
	}
}

func (d *h1Downstream) body(limit int64) (io.Reader, bool) {
	d.hb.ResetRequest(&d.req, limit)
	return &d.in, d.hb.HasBody()
}

func (d *h1Downstream) contentLength() int64 { return d.req.ContentLength }

func (d *h1Downstream) trailer() http.Header { return d.hb.Trailer() }

func (d *h1Downstream) upgrade() string { return d.req.Upgrade }

func (d *h1Downstream) started() bool { return d.headSent }

func (d *h1Downstream) errorCloses(code int) bool {
	return code == http.StatusBadRequest || code == http.StatusRequestTimeout || code == http.StatusRequestEntityTooLarge ||
		code == http.StatusRequestHeaderFieldsTooLarge || !d.hb.Done() ||
		d.req.Method == http.MethodConnect // the client may be sending tunnel bytes already
}

// errClientGone is the cause of a request's context when its client closed
// the connection while the request was in flight.
var errClientGone = errors.New("proxy: client closed the connection")

// clientWatchDelay is how long a request runs before its client is
// watched: fast requests (most) pay nothing for the watch.
const clientWatchDelay = 200 * time.Millisecond

const (
	watchIdle = iota
	watchArmed
	watchRunning
)

// startWatch arranges to notice a client that closes its connection while
// its request waits for the upstream, as nginx does, so the upstream
// request is abandoned rather than finished for nobody: the connection's
// context is canceled (an HTTP/2 upstream stream is reset) and an
// HTTP/1.1 upstream read is cut. Once the request has run for
// clientWatchDelay, a goroutine peeks at the connection, consuming
// nothing: a pipelined request that arrives instead simply ends the
// watch. The timer is made once per connection and is not reset per
// request: when it fires early for the current request it rearms itself
// for the rest of the delay, so a busy connection pays one timer
// operation per clientWatchDelay, not two per request.
func (d *h1Downstream) startWatch(sess *Session, now time.Time) {
	d.watchStop.Store(false)
	d.watchMu.Lock()
	defer d.watchMu.Unlock()
	d.watchSess, d.watchState, d.watchSince = sess, watchArmed, now
	if d.watchTimer == nil {
		d.watchTimer = time.AfterFunc(clientWatchDelay, d.beginWatch)
		d.watchTimerSet = true
		return
	}
	if !d.watchTimerSet {
		d.watchTimer.Reset(clientWatchDelay)
		d.watchTimerSet = true
	}
}

// beginWatch runs on the timer: it starts the watch if the current
// request has run for clientWatchDelay, or rearms for the rest.
func (d *h1Downstream) beginWatch() {
	d.watchMu.Lock()
	defer d.watchMu.Unlock()
	d.watchTimerSet = false
	if d.watchState != watchArmed {
		return // no request, or its watch already runs
	}
	if left := clientWatchDelay - time.Since(d.watchSince); left > 0 {
		d.watchTimer.Reset(left)
		d.watchTimerSet = true
		return
	}
	d.watchState = watchRunning
	d.watchWG.Add(1) // under the lock stopWatch reads the state with
	go d.watch(d.watchSess)
}

func (d *h1Downstream) watch(sess *Session) {
	defer d.watchWG.Done()
	// The deadline left from waiting for the request must not end the
	// watch; stopWatch sets a past one after raising watchStop, so either
	// this sees the flag or the Peek sees that deadline.
	d.c.nc.SetReadDeadline(time.Time{})
	if d.watchStop.Load() {
		return
	}
	if _, err := d.c.br.Peek(1); err == nil || d.watchStop.Load() || isTimeout(err) {
		return
	}
	d.cancelConn(errClientGone)
	sess.abortUpstream()
}

// stopWatch ends the watch before the connection is read again.
func (d *h1Downstream) stopWatch() {
	d.watchMu.Lock()
	running := d.watchState == watchRunning
	d.watchState = watchIdle
	d.watchMu.Unlock()
	if !running {
		return // the timer, if set, finds the state idle or a newer request
	}
	d.watchStop.Store(true)
	d.c.nc.SetReadDeadline(time.Unix(1, 0)) // wakes the Peek
	d.watchWG.Wait()
	d.dl.setRead(d.c.nc, time.Time{})
}
