package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// exchange is an upstream response being read, over HTTP/1.1 or HTTP/2.
type exchange interface {
	read(p []byte) (int, error)
	// buffered reports bytes readable without blocking (0 if unknown), so
	// the client side is flushed only when the upstream side would block.
	buffered() int
	// ahead reports whether the rest of the body is worth reading on into
	// room bytes before the client is written to: its declared rest fits,
	// or its next bytes or its end are buffered already (see readAhead).
	ahead(room int) bool
	trailer() http.Header
	// stopBody stops sending the request body, if it still streams, and
	// waits until its sender is done with it; the response stays
	// readable, the connection is not reused.
	stopBody()
	// release ends the exchange; ok means the response was read to its end.
	release(ok bool)
}

var (
	_ exchange = (*h1Exchange)(nil)
	_ exchange = (*h2Exchange)(nil)
)

// handle runs one request through the phases; start is when its head was
// read. It is the only entry point for both protocols, and for the
// cache's background requests. A panic in the code the request runs is
// recovered here and fails this request only (see recovered).
func (s *Server[C]) handle(sess *Session, start time.Time) {
	sess.Start = start
	sess.MaxBodyBytes = s.cfg.Downstream.MaxBodyBytes
	sess.MaxRetries = s.cfg.Retries
	var (
		ctx  C
		span Span
		err  error
		at   = stepRun
	)
	defer func() {
		if v := recover(); v != nil {
			s.recovered(sess, ctx, span, at, err, v)
		}
	}()
	ctx = s.app.NewCtx()
	sess.uctx, sess.hooks = ctx, s
	sess.ctx, span = s.startSpan(sess, SpanRequest, nil)
	if stop := startGRPCDeadline(sess); stop != nil {
		defer stop()
	}
	err = s.run(sess, ctx)
	if err != nil {
		s.rejectedBody(sess, err)
		s.fail(sess, ctx, err)
	}
	at = stepOpenSpan
	s.endRequest(sess, ctx, span, err, &at)
}

// run is the request's path through the phases, up to a response sent.
func (s *Server[C]) run(sess *Session, ctx C) error {
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
			return nil
		}
	}
	if handled, err := s.limit(sess); handled || err != nil {
		return err
	}
	if sess.Cache != nil || s.ph.reqCache != nil {
		if done, err := s.cacheRequest(sess, ctx); done {
			return err
		}
	}
	err := s.forward(sess, ctx)
	if err != nil && s.staleUsableOnError(sess) {
		return s.serveStaleOnError(sess, ctx)
	}
	return err
}

// forward sends the request upstream, retrying as allowed, and streams the
// response back.
func (s *Server[C]) forward(sess *Session, ctx C) error {
	if sess.Req.Method == http.MethodConnect {
		return errConnectNotProxied
	}
	src, has := sess.ds.body(sess.MaxBodyBytes)
	if cl := sess.ds.contentLength(); sess.MaxBodyBytes > 0 && cl > sess.MaxBodyBytes {
		return &Error{Kind: KindBodyTooLarge, Source: Downstream, Err: fmt.Errorf("content-length %d over limit %d", cl, sess.MaxBodyBytes)}
	}
	body := newReqBody(src, has, sess.ReplayBufferBytes)
	sess.body = body
	if err := body.prefetch(); err != nil {
		return classifyIO(err, Downstream)
	}
	for {
		peer, err := s.app.UpstreamPeer(sess, ctx)
		if err != nil {
			return err
		}
		if peer == nil {
			return &Error{Kind: KindInternal, Source: Internal, Err: errors.New("UpstreamPeer returned no peer")}
		}
		sess.Peer = peer
		err = grpcDeadlineExpired(sess, s.attempt(sess, ctx, peer, body))
		if err != nil {
			err = clientFault(sess, body, err)
		}
		// Before the health record sees it: a client that sends half a
		// body and leaves, or resets its stream while the proxy dials,
		// must not count against the peer (three such requests ejected a
		// healthy peer under passive health, and every client got 503).
		finishAttempt(sess, err)
		if err == nil {
			return nil
		}
		if body.err != nil { // the client's body failed: not the upstream's fault
			return err
		}
		err = s.onAttemptError(sess, ctx, peer, err)
		if !s.shouldRetry(sess, err, body) {
			return err
		}
		sess.Tried = append(sess.Tried, peer)
		sess.Retries++
		s.metrics.retries.Inc()
	}
}

// errConnectNotProxied answers a CONNECT that no phase handled. A reverse
// proxy has no tunnel to offer, and forwarding the request as an ordinary
// one let an upstream that honours CONNECT (a forward proxy) answer 2xx
// and start a tunnel on a connection the pool then gave the next client:
// that client's request, cookies and all, went into the tunnel (RFC 9112
// 6.3: a 2xx to CONNECT makes the connection a tunnel). nginx and Pingora
// refuse CONNECT by default too. An application that wants to serve it
// answers it in RequestFilter.
var errConnectNotProxied = &Error{Kind: KindInvalidRequest, Source: Downstream, Status: http.StatusMethodNotAllowed,
	Err: errors.New("CONNECT is not proxied")}

// attempt sends the request to peer and streams the response back.
func (s *Server[C]) attempt(sess *Session, ctx C, peer *Peer, body *reqBody) error {
	sess.upgrade = ""
	if peer.Protocol == HTTP1 {
		sess.upgrade = allowedUpgrade(sess.ds.upgrade(), sess.Upgrades)
	}
	buildUpstreamRequest(sess, &sess.upReq, sess.scheme(), s.via(1), sess.upgrade)
	_, span := s.startSpan(sess, SpanAttempt, sess.upReq.Header)
	sess.openSpan = span
	status, err := s.sendAttempt(sess, ctx, peer, body)
	sess.openSpan = nil
	endSpan(span, sess, SpanEnd{Status: status, Err: err})
	return err
}

// sendAttempt runs the attempt's request phases, sends the request and
// streams the response back; status is the upstream's, 0 if none came.
func (s *Server[C]) sendAttempt(sess *Session, ctx C, peer *Peer, body *reqBody) (status int, err error) {
	if err := grpcDeadlineHeader(sess, sess.upReq.Header); err != nil {
		return 0, err
	}
	if sess.cache.fill != nil {
		s.prepareFill(sess, &sess.upReq)
	}
	if p := s.ph.upRequest; p != nil {
		if err := p.UpstreamRequestFilter(sess, &sess.upReq, ctx); err != nil {
			return 0, err
		}
	}
	resp := &sess.upResp
	hx, ex, err := s.roundTrip(sess, peer, body, resp)
	if err != nil {
		return 0, err
	}
	sess.ex = ex // for a panic from here on (releaseAfterPanic)
	if hx != nil && resp.Status == http.StatusSwitchingProtocols {
		return resp.Status, s.tunnel(sess, ctx, hx, resp)
	}
	sess.UpstreamTTFB = time.Since(sess.Start)
	status = resp.Status
	if retryStatus(sess, status) && retryLeft(sess) {
		// The body's state says whether it can be sent again; its sender
		// changes it while the body streams.
		ex.stopBody()
		if canRetry(sess, body) {
			ex.release(false)
			return status, &Error{Kind: KindUpstreamStatus, Source: Upstream, Retry: true, Status: status,
				Err: fmt.Errorf("upstream answered %d", status)}
		}
	}
	return status, s.respond(sess, ctx, ex, resp)
}

// roundTrip takes a connection slot of peer (see ConnLimit), sends the
// request and reads the response head into resp. The exchange holds the
// slot and frees it when it is released; hx is the exchange when HTTP/1.1.
func (s *Server[C]) roundTrip(sess *Session, peer *Peer, body *reqBody, resp *ResponseHeader) (hx *h1Exchange, ex exchange, err error) {
	slot, err := s.acquireSlot(sess, peer)
	if err != nil {
		return nil, nil, err
	}
	if peer.Protocol == HTTP1 {
		hx, err = s.h1RoundTrip(sess, peer, &sess.upReq, body, resp)
		if err == nil {
			hx.slot = slot
			return hx, hx, nil
		}
	} else {
		var h2x *h2Exchange
		h2x, err = s.h2RoundTrip(sess, peer, &sess.upReq, body, resp)
		if err == nil {
			h2x.slot = slot
			return nil, h2x, nil
		}
	}
	slot.release()
	return nil, nil, err
}

// respond runs the response phases, sends the head and streams the body.
func (s *Server[C]) respond(sess *Session, ctx C, ex exchange, resp *ResponseHeader) error {
	if sess.cache.cfg != nil {
		sess.cache.hopCacheField = connectionNamesCacheField(resp.Header)
	}
	stripHopByHop(resp.Header)
	dropForbiddenTrailerNames(resp.Header)
	if hx, ok := ex.(*h1Exchange); ok && hx.c != nil && !hx.c.body.Chunked() {
		delete(resp.Header, "Trailer") // announces trailers its framing cannot carry
	}
	if v := s.via(2); v != "" {
		appendField(resp.Header, "Via", v)
	}
	if p := s.ph.upResponse; p != nil {
		if err := p.UpstreamResponseFilter(sess, resp, ctx); err != nil {
			ex.release(false)
			return err
		}
	}
	if sess.cache.cfg != nil {
		if done, err := s.cacheResponse(sess, ctx, ex, resp); done || err != nil {
			if !done {
				ex.release(false)
			}
			return err
		}
	}
	if err := s.filterResponse(sess, resp); err != nil {
		ex.release(false)
		return err
	}
	if trailersMayFollow(ex, resp.Header) {
		sess.ds.trailersFollow()
	}
	if err := sess.ds.writeHead(resp); err != nil {
		ex.release(false)
		return classifyIO(err, Downstream)
	}
	sess.Status = resp.Status
	if sess.cache.clientDone {
		return s.finishEarly(sess, ctx, ex)
	}
	return s.copyBody(sess, ctx, ex)
}

// trailersMayFollow reports whether a response with head h may end with
// trailers however its body is framed: an HTTP/2 upstream's (HTTP/1.1
// carries trailers only without a Content-Length) that announces them in
// Trailer, or a gRPC response, whose status comes in trailers.
func trailersMayFollow(ex exchange, h http.Header) bool {
	if _, h2 := ex.(*h2Exchange); !h2 || len(h["Content-Length"]) == 0 {
		return false
	}
	return len(h["Trailer"]) > 0 || isGRPCContentType(h.Get("Content-Type"))
}

func (s *Server[C]) filterResponse(sess *Session, resp *ResponseHeader) error {
	addLimitFields(resp.Header, sess.limitPolicy, sess.limitState)
	if p := s.ph.response; p != nil {
		return p.ResponseFilter(sess, resp, sess.uctx.(C))
	}
	return nil
}

// copyBody streams the upstream body to the client through the body
// filter, and into the cache's fill when it stores the response. A fill
// goes on when its own client fails or has had its answer (a 304), so the
// requests collapsed onto it still get the whole body.
func (s *Server[C]) copyBody(sess *Session, ctx C, ex exchange) error {
	if done, err := s.spliceRelay(sess, ex); done {
		return err
	}
	bp := getRelayBuf()
	defer putRelayBuf(bp)
	buf := *bp
	cs := &sess.cache
	var trailer http.Header
	var clientErr error
	if cs.clientDone {
		clientErr = errClientAnswered
	}
	for {
		n, rerr := readBody(sess, ex, buf)
		eof := errors.Is(rerr, io.EOF)
		if rerr != nil && !eof {
			ex.release(false)
			if err := grpcDeadlineExpired(sess, rerr); errors.Is(err, errGRPCDeadline) && grpcDeadlineTrailers(sess) {
				return err
			}
			sess.ds.abort()
			return classifyIO(rerr, Upstream)
		}
		if eof {
			// The trailer map belongs to the connection, which another
			// request may take from the pool as soon as it is released.
			if t := ex.trailer(); len(t) > 0 {
				trailer = t.Clone()
				dropForbiddenTrailers(trailer)
			}
			ex.release(true)
		}
		if cs.storing && n > 0 {
			s.teeFill(sess, buf[:n])
		}
		if clientErr == nil {
			if clientErr = s.sendChunk(sess, ctx, ex, buf[:n], eof); clientErr != nil && !cs.storing {
				ex.release(false)
				sess.ds.abort()
				return clientErr
			}
		}
		if eof {
			break
		}
	}
	if cs.storing {
		s.commitFill(sess)
	}
	if clientErr != nil {
		if errors.Is(clientErr, errClientAnswered) {
			return nil
		}
		sess.ds.abort()
		return clientErr
	}
	if err := sess.ds.finish(trailer); err != nil {
		sess.ds.abort()
		return classifyIO(err, Downstream)
	}
	return nil
}

// readBody reads the next piece of the upstream body into buf, and on
// when the client cannot take it now (readAhead).
func readBody(sess *Session, ex exchange, buf []byte) (int, error) {
	n, err := ex.read(buf)
	if err == nil && n < len(buf) && sess.ds.blocked(n) {
		return readAhead(ex, buf, n)
	}
	return n, err
}

// readAhead reads on into buf after a read of n bytes that the client
// cannot take now (downstream.blocked), while the rest of the body is
// known to fit in what is left of buf or is there without waiting
// (exchange.ahead). When the body's end comes with it, copyBody puts the
// upstream connection back in the pool (or closes it) before it waits for
// the client, so a client that reads slowly or not at all holds no
// upstream connection, nor a slot of the peer's ConnLimit, for a response
// of up to relayBufSize: an HTTP/2 client that opened many streams and
// kept their windows shut held one upstream connection per stream until
// the stream timed out, and exhausted the origin's file descriptors.
// nginx lets the upstream go once the response is in its buffers
// (proxy_buffering) for the same reason. A client that takes the bytes
// gets them as they come, as before: only a blocked one waits for the
// rest. The common response, head and body in one read, never gets here:
// its first read ends with io.EOF.
func readAhead(ex exchange, buf []byte, n int) (int, error) {
	for n < len(buf) && ex.ahead(len(buf)-n) {
		m, err := ex.read(buf[n:])
		n += m
		if err != nil || m == 0 {
			return n, err
		}
	}
	return n, nil
}

// errClientAnswered marks a client whose response ended before the
// upstream body (see finishEarly): the body only fills the cache.
var errClientAnswered = errors.New("proxy: client already answered")

// sendChunk passes one chunk of the upstream body through the body filter
// to the client, flushing when the upstream has nothing more buffered.
func (s *Server[C]) sendChunk(sess *Session, ctx C, ex exchange, chunk []byte, eof bool) error {
	if bf := s.ph.responseBody; bf != nil && (len(chunk) > 0 || eof) {
		var err error
		if chunk, err = bf.ResponseBodyFilter(sess, chunk, eof, ctx); err != nil {
			return err
		}
	}
	if len(chunk) > 0 {
		if err := sess.ds.write(chunk); err != nil {
			return classifyIO(err, Downstream)
		}
		sess.BytesOut += int64(len(chunk))
	}
	if !eof && ex.buffered() == 0 {
		if err := sess.ds.flush(); err != nil {
			return classifyIO(err, Downstream)
		}
	}
	return nil
}

// finishEarly ends a client's response whose head says it all (a 304 the
// cache answered from the upstream's 200), then goes on filling the cache
// with the body, or drops the body when nothing stores it.
func (s *Server[C]) finishEarly(sess *Session, ctx C, ex exchange) error {
	if err := sess.ds.finish(nil); err != nil {
		sess.ds.abort()
		if !sess.cache.storing {
			ex.release(false)
			return classifyIO(err, Downstream)
		}
	}
	if !sess.cache.storing {
		ex.release(false)
		return nil
	}
	return s.copyBody(sess, ctx, ex)
}

// fail answers a failed request: FailToProxy's page, or the default short
// plain-text one (a trailers-only gRPC status for gRPC requests), unless
// the response had started (then the connection is cut, as nothing else
// can tell the client).
func (s *Server[C]) fail(sess *Session, ctx C, err error) {
	if sess.ds.started() {
		sess.ds.abort()
		if sess.Status == 0 {
			sess.Status = StatusFor(err)
		}
		return
	}
	if p := s.ph.failProxy; p != nil {
		if code := p.FailToProxy(sess, ctx, err); sess.ds.started() {
			sess.Status = code
			return
		}
	}
	code := StatusFor(err)
	if code == 499 { // the client is gone: nothing to answer
		sess.Status = code
		sess.ds.abort()
		return
	}
	if isGRPC(sess.Req) { // a gRPC client reads a status, not a page
		s.writeGRPCError(sess, err, code)
		return
	}
	s.writeError(sess, code)
}

func (s *Server[C]) writeError(sess *Session, code int) {
	body := errorBody(code)
	h := http.Header{
		"Content-Type":           {"text/plain; charset=utf-8"},
		"Content-Length":         {strconv.Itoa(len(body))},
		"X-Content-Type-Options": {"nosniff"},
	}
	if sess.ds.errorCloses(code) {
		h["Connection"] = []string{"close"}
	}
	if code == http.StatusMethodNotAllowed { // RFC 9110 15.5.6: a 405 lists what is allowed
		h["Allow"] = allowedMethods
	}
	resp := &ResponseHeader{Status: code, Header: h}
	if err := sess.ds.writeHead(resp); err == nil {
		if sess.Req.Method != http.MethodHead {
			sess.ds.write(body)
		}
		sess.ds.finish(nil)
	}
	sess.Status = code
}

var allowedMethods = []string{"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE"}

// errorBody is the short text of a proxy-made error: the status and its
// reason, never upstream details.
func errorBody(code int) []byte {
	text := http.StatusText(code)
	if text == "" {
		text = "Error"
	}
	return []byte(strconv.Itoa(code) + " " + text + "\n")
}

func (s *Server[C]) via(proto int) string {
	return viaValue(proto, s.cfg.Via)
}
