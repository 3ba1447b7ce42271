//go:build linux

package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pingora-go/pingora-go/proxy/h1"
	"github.com/pingora-go/pingora-go/proxy/internal/evloop"
)

// The event-loop listener (ListenerConfig.EventLoop) is an experiment: one
// epoll loop per GOMAXPROCS on a locked thread owns client and upstream
// sockets, with no goroutine per connection and no netpoller park/wake.
//
// Its fast path serves HTTP/1.1 keep-alive GET and HEAD requests without a
// body, of a RouterApp, to plain HTTP/1.1 peers. It parses with proxy/h1
// and answers through h1Downstream (the goroutine path's framing), and runs
// the same steps as handle: EarlyRequestFilter, RequestFilter (the route),
// the Limiter, UpstreamPeer, the forwarding fields, UpstreamRequestFilter,
// retries with FailToConnect and ErrorWhileProxy, UpstreamResponseFilter,
// ResponseFilter, FailToProxy, spans, metrics, the access log and Logging.
//
// Everything else is handed to the goroutine path with the bytes read so
// far (serveHandedH1), before any phase ran: a head that is incomplete in
// the first read or malformed (so the same 400, 408 and 431 answers come
// from the same code), a request with a body, Upgrade, Expect, CONNECT,
// HTTP/1.0, a non-origin-form target, a route that caches or has a peer
// the loop cannot dial, an active Limiter (it may wait), an app that is not
// a RouterApp, or a server with a cache-phase or a body filter. Upstream
// responses that are chunked or end at close are relayed on the loop
// thread with blocking reads and writes, correct but stalling the loop's
// other connections meanwhile.

// evTick is how often a loop checks deadlines and the server's state.
const evTick = 50 * time.Millisecond

// evLoop is one event loop of a listener, with its connections and its
// pool of idle upstream connections.
type evLoop[C any] struct {
	s     *Server[C]
	lc    ListenerConfig
	loop  *evloop.Loop
	ln    *evListener // nil once the loop stopped watching it
	conns map[*evConn[C]]struct{}
	idle  map[string][]*evUp[C]
	buf   []byte // for reads, shared by the loop's sockets
	drain time.Time
}

// serveEvents serves ln with GOMAXPROCS event loops until the server
// stops (Serve calls it for a ListenerConfig.EventLoop listener).
func (s *Server[C]) serveEvents(ln net.Listener, lc ListenerConfig) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return errors.New("proxy: an event-loop listener must be a TCP listener")
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	// The loops accept on a dup of the listener, closed when they all
	// stopped watching it: a closed descriptor's number may be reused.
	lfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { lfd, derr = unix.Dup(int(fd)) }); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	unix.CloseOnExec(lfd)
	unix.SetNonblock(lfd, true)
	return s.runEventLoops(&evListener{fd: lfd}, lc)
}

// evListener is the listening socket the loops of a listener share.
type evListener struct {
	fd       int
	mu       sync.Mutex
	watchers int
}

// unwatched is called by each loop that stopped watching the listener;
// the last one closes it.
func (l *evListener) unwatched() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.watchers--; l.watchers == 0 {
		unix.Close(l.fd)
	}
}

// runEventLoops runs the loops of one listener and returns when they end.
func (s *Server[C]) runEventLoops(ln *evListener, lc ListenerConfig) error {
	n := runtime.GOMAXPROCS(0)
	loops := make([]*evLoop[C], 0, n)
	for range n {
		l, err := evloop.New()
		if err != nil {
			for _, lp := range loops {
				lp.loop.Close()
			}
			unix.Close(ln.fd)
			return err
		}
		lp := &evLoop[C]{s: s, lc: lc, loop: l, ln: ln, conns: map[*evConn[C]]struct{}{},
			idle: map[string][]*evUp[C]{}, buf: make([]byte, 64<<10)}
		loops = append(loops, lp)
	}
	ln.watchers = len(loops)
	for _, lp := range loops {
		if err := lp.loop.AddExclusive(ln.fd, evAcceptor[C]{lp}); err != nil {
			return err // unreachable in practice: a new epoll set and a listening socket
		}
	}
	var wg sync.WaitGroup
	for _, lp := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer lp.loop.Close()
			if err := lp.loop.Run(evTick, lp.tick); err != nil {
				s.errLog.Error("event loop failed", "listener", lc.Name, "err", err)
			}
		}()
	}
	wg.Wait()
	return ErrServerClosed
}

// evAcceptor accepts the listener's connections on a loop.
type evAcceptor[C any] struct{ lp *evLoop[C] }

func (a evAcceptor[C]) Event(uint32) {
	lp := a.lp
	if lp.ln == nil {
		return
	}
	fd, sa, err := unix.Accept4(lp.ln.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return // EAGAIN: another loop took it
	}
	s := lp.s
	select {
	case s.connSem <- struct{}{}:
	default:
		s.metrics.connLimitWaits.Inc()
		unix.Close(fd) // over MaxConns: refused at once, not queued
		return
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	c := lp.newConn(fd, sockaddrIP(sa))
	c.events = evloop.In
	if err := lp.loop.Add(fd, evloop.In|evloop.RdHup, c); err != nil {
		c.close()
		return
	}
	c.read() // a deferred accept (TCP_DEFER_ACCEPT, see Listen) has the request there
}

func sockaddrIP(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.IP(a.Addr[:]).String()
	case *unix.SockaddrInet6:
		return net.IP(a.Addr[:]).String()
	}
	return ""
}

// tick enforces deadlines and follows a shutdown; false ends the loop.
func (lp *evLoop[C]) tick(now time.Time) bool {
	s := lp.s
	if s.draining.Load() {
		if lp.ln != nil {
			lp.loop.Del(lp.ln.fd)
			lp.ln.unwatched()
			lp.ln = nil
		}
		s.mu.Lock()
		graceful := s.graceful
		s.mu.Unlock()
		if lp.drain.IsZero() {
			lp.drain = now.Add(s.cfg.Downstream.DrainLinger)
			for c := range lp.conns {
				c.hc.startDrain(lp.drain)
			}
		}
		for c := range lp.conns {
			if !graceful || c.up == nil && !now.Before(lp.drain) {
				c.fail(errServerClosing)
			}
		}
	}
	for c := range lp.conns {
		c.checkDeadline(now)
	}
	if len(lp.conns) == 0 && lp.ln == nil {
		for _, list := range lp.idle {
			for _, u := range list {
				u.close()
			}
		}
		return false
	}
	return true
}

var errServerClosing = errors.New("proxy: server closing")

// evPipe is the net.Conn an event-loop connection's h1Downstream (or an
// upstream request) is written to: with nothing pending, it writes to fd
// (if fd >= 0) at once, and keeps what the socket did not take in out
// for the loop to send (a failed write is noticed there).
type evPipe struct {
	fd  int
	out *[]byte
}

func (p evPipe) Write(b []byte) (int, error) {
	n := 0
	if p.fd >= 0 && len(*p.out) == 0 {
		if n, _ = unix.Write(p.fd, b); n < 0 {
			n = 0
		}
	}
	*p.out = append(*p.out, b[n:]...)
	return len(b), nil
}
func (evPipe) Read([]byte) (int, error)         { return 0, io.EOF }
func (evPipe) Close() error                     { return nil }
func (evPipe) LocalAddr() net.Addr              { return nil }
func (evPipe) RemoteAddr() net.Addr             { return nil }
func (evPipe) SetDeadline(time.Time) error      { return nil }
func (evPipe) SetReadDeadline(time.Time) error  { return nil }
func (evPipe) SetWriteDeadline(time.Time) error { return nil }

// evSource feeds a head parser from bytes already read: parsing starts
// over from the first byte on each attempt, and starved records that
// the parser wanted more than there is.
type evSource struct {
	b       []byte
	pos     int
	starved bool
}

func (r *evSource) Read(p []byte) (int, error) {
	if r.pos >= len(r.b) {
		r.starved = true
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, r.b[r.pos:])
	r.pos += n
	return n, nil
}

// evConn is a client connection on a loop.
type evConn[C any] struct {
	lp    *evLoop[C]
	fd    int
	in    []byte // read and not consumed
	out   []byte // to send
	src   evSource
	br    *bufio.Reader
	hc    clientConn
	d     *h1Downstream
	sess  Session
	ctx   C
	span  Span
	body  *reqBody
	base  context.Context
	stop  context.CancelCauseFunc
	up    *evUp[C] // the request's upstream; nil between requests
	peer  *Peer
	aspan Span // the attempt's
	t     UpstreamTimeouts
	err   error     // the request's error, for the end of it
	until time.Time // the current deadline: keep-alive, upstream or write
	// closing: the connection closes once the response is sent
	closing bool
	events  uint32 // as setEvents set them
}

func (lp *evLoop[C]) newConn(fd int, ip string) *evConn[C] {
	s := lp.s
	c := &evConn[C]{lp: lp, fd: fd}
	c.hc = clientConn{lc: lp.lc, clientIP: ip, nc: evPipe{fd, &c.out}}
	c.hc.raw = c.hc.nc
	c.hc.bw = bufio.NewWriterSize(c.hc.nc, writeBufSize)
	c.br = bufio.NewReaderSize(&c.src, readBufSize)
	d := &h1Downstream{c: &c.hc, cfg: &s.cfg.Downstream}
	d.reader = h1.NewReader(c.br, h1.Limits{MaxHeaderBytes: d.cfg.MaxHeaderBytes, MaxHeaders: d.cfg.MaxHeaders})
	d.hb = h1.NewBody(d.reader)
	d.in = h1BodyReader{d: d}
	d.req.Header, c.sess.upReq.Header = http.Header{}, http.Header{}
	c.d = d
	c.sess.ClientIP, c.sess.Listener = ip, lp.lc.Name
	c.base, c.stop = context.WithCancelCause(context.Background())
	c.until = time.Now().Add(d.cfg.HeaderTimeout)
	if !lp.drain.IsZero() {
		c.hc.startDrain(lp.drain)
	}
	lp.conns[c] = struct{}{}
	s.wg.Add(1)
	s.metrics.activeConns.Inc()
	return c
}

// Event handles the client socket: a request to read, room to write, or
// the client leaving.
func (c *evConn[C]) Event(ev uint32) {
	if ev&(evloop.Hup|evloop.Err) != 0 || c.up != nil && ev&evloop.RdHup != 0 {
		c.fail(errClientGone)
		return
	}
	if ev&evloop.Out != 0 {
		if !c.send() {
			return
		}
		if c.up == nil && len(c.out) == 0 && len(c.in) > 0 {
			c.serve() // a request pipelined behind the one just sent
			return
		}
	}
	if ev&evloop.In != 0 {
		c.read()
	}
}

// read reads what the client sent and serves it; while a request is in
// flight it keeps what a client pipelined, up to readBufSize.
func (c *evConn[C]) read() {
	busy := c.up != nil || len(c.out) > 0
	if busy && len(c.in) >= readBufSize {
		c.setEvents(0) // until this request is done (see end)
		return
	}
	buf := c.lp.buf
	n, err := unix.Read(c.fd, buf)
	if err == unix.EAGAIN {
		return
	}
	if n <= 0 {
		c.fail(errClientGone) // between requests: a close
		return
	}
	c.in = append(c.in, buf[:n]...)
	if !busy {
		c.serve()
	}
}

// setEvents changes what the client socket is watched for, beyond its
// closing: In unless in is full, Out while output waits.
func (c *evConn[C]) setEvents(ev uint32) {
	if ev != c.events {
		c.events = ev
		c.lp.loop.Mod(c.fd, ev|evloop.RdHup)
	}
}

// serve starts the request at the head of c.in, or hands the connection
// to the goroutine path.
func (c *evConn[C]) serve() {
	s, d := c.lp.s, c.d
	if len(c.in) == 0 {
		return
	}
	c.hc.state.Store(connActive)
	c.src = evSource{b: c.in}
	c.br.Reset(&c.src)
	if err := d.reader.ReadRequest(&d.req); err != nil || !c.fast() {
		c.handOff()
		return
	}
	c.in = c.in[:copy(c.in, c.in[c.src.pos-c.br.Buffered():])]
	now := time.Now()
	d.startRequest(&c.sess, c.base)
	sess := &c.sess
	sess.Start = now
	sess.MaxBodyBytes, sess.MaxRetries = s.cfg.Downstream.MaxBodyBytes, s.cfg.Retries
	c.ctx = s.app.NewCtx()
	sess.uctx, sess.hooks = c.ctx, s
	sess.ctx, c.span = s.startSpan(sess, SpanRequest, nil)
	c.err = nil
	if err := c.run(); err != nil {
		c.failRequest(err)
	}
}

// fast reports whether the fast path runs the parsed request (see the
// comment at the top of the file).
func (c *evConn[C]) fast() bool {
	s, r := c.lp.s, &c.d.req
	if r.Method != http.MethodGet && r.Method != http.MethodHead || r.Minor != 1 || r.ExpectContinue ||
		r.ContentLength > 0 || len(r.Header["Transfer-Encoding"]) > 0 || len(r.Header["Upgrade"]) > 0 ||
		r.Target == "" || r.Target[0] != '/' || s.draining.Load() {
		return false
	}
	c.d.hb.ResetRequest(r, 0)
	if c.d.hb.HasBody() {
		return false
	}
	if s.cfg.Limiter != nil && (s.limitActive == nil || s.limitActive.Active()) {
		return false
	}
	if s.ph.reqCache != nil || s.ph.responseBody != nil || s.ph.cacheKey != nil {
		return false
	}
	app, ok := any(s.app).(RouterApp)
	if !ok {
		return false
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	return app.Router.loopable(r.Host, path)
}

// run runs the request up to the upstream request sent: the steps of
// handle and forward before the round trip.
func (c *evConn[C]) run() error {
	s, sess, ctx := c.lp.s, &c.sess, c.ctx
	if p := s.ph.early; p != nil {
		if err := p.EarlyRequestFilter(sess, ctx); err != nil {
			return err
		}
	}
	if p := s.ph.request; p != nil {
		handled, err := p.RequestFilter(sess, ctx)
		if err != nil {
			return err
		}
		if handled {
			if !sess.responded {
				return &Error{Kind: KindInternal, Source: Internal, Err: errors.New("request filter handled the request without responding")}
			}
			c.end()
			return nil
		}
	}
	if handled, err := s.limit(sess); handled || err != nil {
		if err == nil {
			c.end()
		}
		return err
	}
	if sess.Cache != nil {
		return &Error{Kind: KindInternal, Source: Internal, Err: errors.New("event loop: a phase set a cache on a route the loop serves")}
	}
	src, has := sess.ds.body(sess.MaxBodyBytes)
	c.body = newReqBody(src, has, sess.ReplayBufferBytes)
	sess.body = c.body
	return c.attempt()
}

// attempt picks a peer and sends the request to it.
func (c *evConn[C]) attempt() error {
	s, sess, ctx := c.lp.s, &c.sess, c.ctx
	peer, err := s.app.UpstreamPeer(sess, ctx)
	if err != nil {
		return err
	}
	if peer == nil {
		return &Error{Kind: KindInternal, Source: Internal, Err: errors.New("UpstreamPeer returned no peer")}
	}
	sess.Peer, c.peer = peer, peer
	buildUpstreamRequest(sess, &sess.upReq, sess.scheme(), s.via(1), "")
	_, c.aspan = s.startSpan(sess, SpanAttempt, sess.upReq.Header)
	if p := s.ph.upRequest; p != nil {
		if err := p.UpstreamRequestFilter(sess, &sess.upReq, ctx); err != nil {
			return c.attemptFailed(err)
		}
	}
	c.t = peer.Timeouts.withDefaults(s.cfg.Upstream)
	delete(sess.upReq.Header, "Transfer-Encoding")
	u, err := c.lp.upstream(peer, c.t)
	if err != nil {
		return c.attemptFailed(err)
	}
	sess.ConnReused, sess.ConnectTime = u.reused, 0
	if err := u.start(c); err != nil {
		u.close()
		c.up = nil
		return c.attemptFailed(err)
	}
	return nil
}

// attemptFailed ends a failed attempt and retries it when allowed; the
// error it returns ends the request.
func (c *evConn[C]) attemptFailed(err error) error {
	s, sess := c.lp.s, &c.sess
	c.finishAttempt(err)
	err = s.onAttemptError(sess, c.ctx, c.peer, err)
	if !s.shouldRetry(sess, err, c.body) {
		return err
	}
	sess.Tried = append(sess.Tried, c.peer)
	sess.Retries++
	s.metrics.retries.Inc()
	return c.attempt()
}

// finishAttempt ends the attempt's span and health tracking.
func (c *evConn[C]) finishAttempt(err error) {
	status := 0
	if c.up == nil || c.up.headDone {
		status = c.sess.upResp.Status
	}
	endSpan(c.aspan, &c.sess, SpanEnd{Status: status, Err: err})
	c.aspan = nil
	finishAttempt(&c.sess, err)
}

// failRequest answers a failed request (fail) and ends it.
func (c *evConn[C]) failRequest(err error) {
	s := c.lp.s
	c.err = err
	s.rejectedBody(&c.sess, err)
	s.fail(&c.sess, c.ctx, err)
	c.end()
}

// end finishes the request as handle does, then sends the response and
// waits for the next request or closes.
func (c *evConn[C]) end() {
	s, sess, d := c.lp.s, &c.sess, c.d
	c.up = nil
	s.cacheEnd(sess, c.err)
	endSpan(c.span, sess, SpanEnd{Status: sess.Status, Err: c.err})
	s.observe(sess, c.err)
	if p := s.ph.logging; p != nil {
		p.Logging(sess, c.ctx, c.err)
	}
	d.c.bw.Flush()
	c.hc.state.Store(connIdle)
	c.until = time.Now().Add(d.cfg.KeepAliveTimeout)
	// As endRequest for a request without a body.
	c.closing = d.broken || !d.keepAlive
	if c.send() && len(c.out) == 0 {
		c.serve() // a pipelined request
	}
}

// send writes what is pending to the client. It reports false when the
// connection failed and closed.
func (c *evConn[C]) send() bool {
	for len(c.out) > 0 {
		n, err := unix.Write(c.fd, c.out)
		if err == unix.EAGAIN {
			c.setEvents(c.events | evloop.Out)
			c.until = time.Now().Add(c.d.cfg.WriteIdleTimeout)
			return true
		}
		if err != nil {
			c.fail(errClientGone)
			return false
		}
		c.out = c.out[:copy(c.out, c.out[n:])]
	}
	switch {
	case c.up != nil:
		c.setEvents(c.events &^ evloop.Out)
		c.up.resume()
	case c.closing:
		unix.Shutdown(c.fd, unix.SHUT_WR)
		c.close()
		return false
	case c.hc.state.Load() == connIdle:
		c.until = time.Now().Add(c.d.cfg.KeepAliveTimeout)
		c.setEvents(evloop.In)
	}
	return true
}

// fail ends the connection abruptly: its client left or timed out, or
// the server closes. A request in flight is logged with err.
func (c *evConn[C]) fail(err error) {
	if _, ok := c.lp.conns[c]; !ok {
		return
	}
	if u := c.up; u != nil {
		c.err = newError(KindClientCanceled, Downstream, err)
		if errors.Is(err, errServerClosing) {
			c.err = newError(KindInternal, Internal, err)
		}
		c.finishAttempt(c.err)
		c.up = nil
		u.close()
		c.stop(err)
		c.d.abort()
		c.lp.s.fail(&c.sess, c.ctx, c.err)
		c.out = c.out[:0]
		c.end()
		return
	}
	c.close()
}

func (c *evConn[C]) checkDeadline(now time.Time) {
	if now.Before(c.until) {
		return
	}
	if u := c.up; u != nil && len(c.out) == 0 {
		u.timedOut()
		return
	}
	c.fail(os.ErrDeadlineExceeded)
}

// close closes the client socket and forgets the connection.
func (c *evConn[C]) close() {
	lp := c.lp
	if _, ok := lp.conns[c]; !ok {
		return
	}
	delete(lp.conns, c)
	lp.loop.Del(c.fd)
	unix.Close(c.fd)
	c.release()
}

func (c *evConn[C]) release() {
	s := c.lp.s
	c.stop(nil)
	s.metrics.activeConns.Dec()
	<-s.connSem
	s.wg.Done()
}

// handOff gives the connection, with the bytes read and not consumed, to
// the goroutine path; it keeps its connection slot.
func (c *evConn[C]) handOff() {
	lp := c.lp
	delete(lp.conns, c)
	lp.loop.Del(c.fd)
	unix.SetNonblock(c.fd, true)
	f := os.NewFile(uintptr(c.fd), "")
	nc, err := net.FileConn(f) // a dup, in the runtime's poller
	f.Close()
	s := lp.s
	s.metrics.activeConns.Dec()
	if err != nil {
		<-s.connSem
		s.wg.Done()
		c.stop(nil)
		return
	}
	c.stop(nil)
	in := c.in
	go func() {
		defer s.wg.Done()
		defer func() { <-s.connSem }()
		s.serveHandedH1(nc, lp.lc, in)
	}()
}

// evUp is an upstream HTTP/1.1 connection on a loop.
type evUp[C any] struct {
	lp         *evLoop[C]
	fd         int
	key        string
	reused     bool
	connecting bool
	paused     bool
	c          *evConn[C] // the client it serves; nil while idle
	out        []byte     // the request, until written
	in         []byte
	src        evSource
	br         *bufio.Reader
	bw         *bufio.Writer // writes the request into out
	reader     *h1.Reader
	body       *h1.Body
	resp       h1.Response
	headDone   bool
	events     uint32 // as setEvents set them
	got        bool   // a response byte arrived
	left       int64  // Content-Length body bytes still to relay
}

// upstream takes an idle connection to peer from the loop's pool or
// starts connecting a new one.
func (lp *evLoop[C]) upstream(peer *Peer, t UpstreamTimeouts) (*evUp[C], error) {
	key := peer.poolKey()
	if list := lp.idle[key]; len(list) > 0 {
		u := list[len(list)-1]
		lp.idle[key] = list[:len(list)-1]
		u.reused = true
		lp.s.metrics.connsReused.Inc()
		return u, nil
	}
	sa, family, err := sockaddrOf(peer.Addr)
	if err != nil {
		return nil, classifyDial(err)
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, classifyDial(err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	u := &evUp[C]{lp: lp, fd: fd, key: key}
	err = unix.Connect(fd, sa)
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return nil, classifyDial(os.NewSyscallError("connect", err))
	}
	u.connecting = err != nil
	u.br = bufio.NewReaderSize(&u.src, readBufSize)
	u.bw = bufio.NewWriterSize(evPipe{-1, &u.out}, 4096)
	u.reader = h1.NewReader(u.br, h1.Limits{MaxHeaderBytes: 256 << 10, MaxHeaders: 512})
	u.body = h1.NewBody(u.reader)
	u.events = evloop.In | evloop.Out // Out: the connect's end
	if err := lp.loop.Add(fd, u.events, u); err != nil {
		unix.Close(fd)
		return nil, classifyDial(err)
	}
	lp.s.metrics.connsCreated.Inc()
	return u, nil
}

func sockaddrOf(addr string) (unix.Sockaddr, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, 0, err
	}
	ip := net.ParseIP(host)
	if ip4 := ip.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: p}
		copy(sa.Addr[:], ip4)
		return sa, unix.AF_INET, nil
	}
	if ip == nil {
		return nil, 0, errors.New("event loop: peer address is not an IP literal")
	}
	sa := &unix.SockaddrInet6{Port: p}
	copy(sa.Addr[:], ip)
	return sa, unix.AF_INET6, nil
}

// start writes c's upstream request on u.
func (u *evUp[C]) start(c *evConn[C]) error {
	req := &c.sess.upReq
	u.c, c.up = c, u
	c.sess.upResp.Status = 0
	u.headDone, u.got, u.paused = false, false, false
	u.in = u.in[:0]
	if err := h1.WriteRequestHead(u.bw, req.Method, req.URI, req.Host, req.Header); err != nil {
		u.bw.Reset(evPipe{-1, &u.out}) // drops what was written
		return unwritable(err)
	}
	u.bw.Flush()
	c.until = time.Now().Add(c.t.Connect)
	if u.connecting {
		return nil
	}
	c.until = time.Now().Add(c.t.ResponseHeader)
	return u.write()
}

func (u *evUp[C]) write() error {
	for len(u.out) > 0 {
		n, err := unix.Write(u.fd, u.out)
		if err == unix.EAGAIN {
			u.setEvents(evloop.In | evloop.Out)
			return nil
		}
		if err != nil {
			return &Error{Kind: KindConnectionClosed, Source: Upstream, Retry: true, Err: os.NewSyscallError("write", err)}
		}
		u.out = u.out[n:]
	}
	u.setEvents(evloop.In)
	return nil
}

// setEvents changes what the upstream socket is watched for.
func (u *evUp[C]) setEvents(ev uint32) {
	if ev != u.events {
		u.events = ev
		u.lp.loop.Mod(u.fd, ev)
	}
}

// Event handles the upstream socket: connected, writable, or a response
// (or, idle in the pool, the upstream closing it).
func (u *evUp[C]) Event(ev uint32) {
	c := u.c
	if c == nil {
		u.close() // idle: a close or stray bytes end it
		return
	}
	if u.connecting && ev&(evloop.Out|evloop.Err|evloop.Hup) != 0 {
		u.connecting = false
		if e, _ := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
			u.failed(classifyDial(os.NewSyscallError("connect", unix.Errno(e))))
			return
		}
		c.sess.ConnectTime = time.Since(c.sess.Start)
		c.until = time.Now().Add(c.t.ResponseHeader)
	}
	if len(u.out) > 0 && ev&evloop.Out != 0 {
		if err := u.write(); err != nil {
			u.failed(err)
			return
		}
	}
	if ev&(evloop.In|evloop.Hup|evloop.Err) != 0 && !u.paused {
		u.read()
	}
}

// read reads the response: the head, then the body relayed to the client.
func (u *evUp[C]) read() {
	c := u.c
	n, err := unix.Read(u.fd, u.lp.buf)
	if err == unix.EAGAIN {
		return
	}
	if n <= 0 {
		if err == nil {
			err = io.EOF
		}
		u.readFailed(err)
		return
	}
	u.got = true
	if u.headDone {
		u.relay(u.lp.buf[:n])
		return
	}
	u.in = append(u.in, u.lp.buf[:n]...)
	u.head(c)
}

// readFailed handles an upstream that closed or failed before the end of
// the response.
func (u *evUp[C]) readFailed(err error) {
	if !u.headDone {
		u.failed((&h1Exchange{}).headError(err))
		return
	}
	c := u.c
	err = classifyIO(err, Upstream)
	c.finishAttempt(err)
	u.close()
	c.up = nil
	c.d.abort()
	c.failRequest(err)
}

// failed ends an attempt that failed before the response head: a reused
// connection the upstream closed while idle is replaced once, as
// h1RoundTrip does; otherwise the attempt fails (and may be retried).
func (u *evUp[C]) failed(err error) {
	c := u.c
	reused := u.reused && !u.got
	u.close()
	c.up = nil
	if reused && closedBeforeResponse(err) {
		nu, derr := c.lp.upstream(c.peer, c.t)
		if derr == nil {
			c.sess.ConnReused = false
			if derr = nu.start(c); derr == nil {
				return
			}
			nu.close()
		}
		err = derr
	}
	if err = c.attemptFailed(err); err != nil {
		c.failRequest(err)
	}
}

func (u *evUp[C]) timedOut() {
	err := error(os.ErrDeadlineExceeded)
	if u.connecting {
		u.failed(classifyDial(err))
		return
	}
	if !u.headDone {
		u.failed(newError(KindReadTimeout, Upstream, err))
		return
	}
	u.readFailed(newError(KindReadTimeout, Upstream, err))
}

// head parses the response head once it is whole and sends the client's.
func (u *evUp[C]) head(c *evConn[C]) {
	s, sess := u.lp.s, &c.sess
	for {
		u.src = evSource{b: u.in}
		u.br.Reset(&u.src)
		err := u.reader.ReadResponse(&u.resp, sess.upReq.Method)
		if err != nil && u.src.starved {
			return // not whole yet
		}
		if err != nil {
			u.failed(newError(KindInvalidResponse, Upstream, err))
			return
		}
		rest := u.src.pos - u.br.Buffered()
		u.in = u.in[:copy(u.in, u.in[rest:])]
		if u.resp.Status >= 200 {
			break
		}
		if u.resp.Status == http.StatusSwitchingProtocols {
			u.failed(newError(KindInvalidResponse, Upstream, errors.New("101 to a request without Upgrade")))
			return
		}
	}
	u.headDone = true
	u.body.ResetResponse(&u.resp)
	resp := &sess.upResp
	resp.Status, resp.Header = u.resp.Status, u.resp.Header
	sess.UpstreamTTFB = time.Since(sess.Start)
	if retryStatus(sess, resp.Status) && canRetry(sess, c.body) {
		u.close()
		c.up = nil
		err := c.attemptFailed(&Error{Kind: KindUpstreamStatus, Source: Upstream, Retry: true, Status: resp.Status,
			Err: errors.New("upstream answered " + strconv.Itoa(resp.Status))})
		if err != nil {
			c.failRequest(err)
		}
		return
	}
	stripHopByHop(resp.Header)
	if v := s.via(2); v != "" {
		appendField(resp.Header, "Via", v)
	}
	if err := u.filterHead(c, resp); err != nil {
		c.finishAttempt(err)
		u.close()
		c.up = nil
		c.failRequest(err)
		return
	}
	sess.Status = resp.Status
	c.until = time.Now().Add(c.t.ReadIdle)
	switch {
	case u.resp.NoBody:
		u.done()
	case u.resp.ContentLength >= 0:
		u.left = u.resp.ContentLength
		rest := u.in
		u.in = u.in[:0]
		u.relay(rest)
	default:
		u.blockingBody(c)
	}
}

func (u *evUp[C]) filterHead(c *evConn[C], resp *ResponseHeader) error {
	s, sess := u.lp.s, &c.sess
	if p := s.ph.upResponse; p != nil {
		if err := p.UpstreamResponseFilter(sess, resp, c.ctx); err != nil {
			return err
		}
	}
	if err := s.filterResponse(sess, resp); err != nil {
		return err
	}
	return c.d.writeHead(resp)
}

// relay sends body bytes of a Content-Length response to the client,
// pausing the upstream while the client does not take them.
func (u *evUp[C]) relay(p []byte) {
	c := u.c
	if int64(len(p)) > u.left {
		p = p[:u.left] // bytes past the body: the connection is not reused
		u.resp.Close = true
	}
	u.left -= int64(len(p))
	if len(p) > 0 {
		if err := c.d.write(p); err != nil {
			u.readFailed(err)
			return
		}
		c.sess.BytesOut += int64(len(p))
	}
	c.until = time.Now().Add(c.t.ReadIdle)
	if u.left == 0 {
		u.done()
		return
	}
	c.d.c.bw.Flush()
	if !c.send() {
		return
	}
	if len(c.out) > 0 {
		// Out of the epoll set while paused: a hang-up, reported whatever
		// the interest, would otherwise wake the loop until the client reads.
		u.paused = true
		u.lp.loop.Del(u.fd)
	}
}

// resume reads the upstream again once the client took what was pending.
func (u *evUp[C]) resume() {
	if u.paused {
		u.paused = false
		u.events = evloop.In
		if err := u.lp.loop.Add(u.fd, u.events, u); err != nil {
			u.readFailed(err)
		}
	}
}

// done ends a response read whole: the connection goes back to the loop's
// pool when it can carry another request.
func (u *evUp[C]) done() {
	c := u.c
	c.finishAttempt(nil)
	u.c, c.up = nil, nil
	if err := c.d.finish(nil); err != nil {
		c.err = classifyIO(err, Downstream)
	}
	if u.resp.Close || len(u.in) > 0 {
		u.close()
	} else {
		u.reused = false
		u.lp.idle[u.key] = append(u.lp.idle[u.key], u)
	}
	c.end()
}

// blockingBody relays a chunked or close-delimited body with proxy/h1's
// decoder on the loop thread, blocking on both sockets (see the file
// comment).
func (u *evUp[C]) blockingBody(c *evConn[C]) {
	// u.in holds every byte after the head, the reader's buffer included.
	u.src = evSource{b: u.in}
	u.in = nil
	u.br.Reset(&pollReader{src: &u.src, fd: u.fd, timeout: c.t.ReadIdle})
	sess := &c.sess
	buf := u.lp.buf
	for {
		n, err := u.body.Read(buf)
		if n > 0 {
			if werr := c.d.write(buf[:n]); werr != nil {
				err = werr
			}
			sess.BytesOut += int64(n)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil && c.d.c.bw.Flush() == nil && c.blockingSend() {
			continue
		}
		if err == nil {
			err = errClientGone
		}
		perr := classifyIO(err, Upstream)
		c.finishAttempt(perr)
		u.close()
		c.up = nil
		c.d.abort()
		c.failRequest(perr)
		return
	}
	if u.br.Buffered() > 0 || u.src.pos < len(u.src.b) {
		u.resp.Close = true // bytes past the body: not reused
	}
	u.br.Reset(&u.src)
	u.done()
}

// blockingSend writes all pending output to the client, waiting for room.
func (c *evConn[C]) blockingSend() bool {
	for len(c.out) > 0 {
		n, err := unix.Write(c.fd, c.out)
		if err == unix.EAGAIN {
			if !pollFd(c.fd, unix.POLLOUT, c.d.cfg.WriteIdleTimeout) {
				return false
			}
			continue
		}
		if err != nil {
			return false
		}
		c.out = c.out[:copy(c.out, c.out[n:])]
	}
	return true
}

// pollReader reads src, then fd, waiting up to timeout for each read.
type pollReader struct {
	src     *evSource
	fd      int
	timeout time.Duration
}

func (r *pollReader) Read(p []byte) (int, error) {
	if r.src.pos < len(r.src.b) {
		return r.src.Read(p)
	}
	for {
		n, err := unix.Read(r.fd, p)
		if err == unix.EAGAIN {
			if !pollFd(r.fd, unix.POLLIN, r.timeout) {
				return 0, os.ErrDeadlineExceeded
			}
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func pollFd(fd int, events int16, timeout time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(fds, int(timeout/time.Millisecond))
	return err == nil && n > 0
}

// close closes an upstream connection, idle or not.
func (u *evUp[C]) close() {
	lp := u.lp
	if u.c == nil {
		list := lp.idle[u.key]
		for i, v := range list {
			if v == u {
				lp.idle[u.key] = append(list[:i], list[i+1:]...)
				break
			}
		}
	}
	u.c = nil
	lp.loop.Del(u.fd)
	unix.Close(u.fd)
}

// serveEventLoop is Serve for a ListenerConfig.EventLoop listener.
func (s *Server[C]) serveEventLoop(ln net.Listener, lc ListenerConfig) error {
	if lc.TLS != nil || lc.H2C {
		ln.Close()
		return errors.New("proxy: an event-loop listener serves cleartext HTTP/1.1 only (no TLS, no h2c)")
	}
	return s.serveEvents(ln, lc)
}
