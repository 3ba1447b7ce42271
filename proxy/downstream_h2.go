package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// serveH2 hands the connection to the HTTP/2 server; each stream becomes a
// request through handle.
func (s *Server[C]) serveH2(c *clientConn) {
	nc := c.nc
	if c.br != nil && c.br.Buffered() > 0 {
		nc = &prefixConn{Conn: c.nc, r: c.br} // the sniffed preface
	}
	nc, g := newH2Conn(nc)
	defer g.finish()
	c.h2.Store(g)
	if c.draining.Load() { // Shutdown may have looked before the Store
		g.startGoAway()
	}
	h := &h2Handler[C]{s: s, c: c}
	s.h2srv.ServeConn(nc, &http2.ServeConnOpts{
		Context:    context.Background(),
		Handler:    h,
		BaseConfig: s.h2shut,
	})
}

type h2Handler[C any] struct {
	s *Server[C]
	c *clientConn
}

var sessionPool = sync.Pool{New: func() any { return new(h2Downstream) }}

func (h *h2Handler[C]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d := sessionPool.Get().(*h2Downstream)
	defer func() {
		*d = h2Downstream{sess: d.sess}
		sessionPool.Put(d)
	}()
	d.w, d.r = w, r
	d.rh = RequestHeader{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header, ProtoMajor: 2}
	if len(r.Trailer) > 0 { // the http2 server moved the Trailer field into r.Trailer
		r.Header["Trailer"] = []string{trailerKeys(r.Trailer)}
	}
	if d.sess == nil {
		d.sess = &Session{}
	}
	sess := d.sess
	sess.ClientIP, sess.TLS, sess.Listener = h.c.clientIP, h.c.tls, h.c.lc.Name
	d.flusher, _ = w.(http.Flusher)
	sess.reset(r.Context(), &d.rh, d)
	h.s.handle(sess, time.Now())
	if d.aborted {
		panic(http.ErrAbortHandler) // resets the stream; the http2 server recovers it
	}
}

// h2Downstream is the client side of one HTTP/2 stream.
type h2Downstream struct {
	sess     *Session
	w        http.ResponseWriter
	r        *http.Request
	rh       RequestHeader
	headSent bool
	aborted  bool
	in       io.Reader
	flusher  http.Flusher
}

func (d *h2Downstream) body(limit int64) (io.Reader, bool) {
	has := d.r.ContentLength != 0
	if d.in == nil {
		d.in = d.r.Body
		if limit > 0 {
			d.in = &limitReader{r: d.r.Body, n: limit}
		}
	}
	return d.in, has
}

func (d *h2Downstream) contentLength() int64 { return d.r.ContentLength }

func (d *h2Downstream) trailer() http.Header { return d.r.Trailer }

func (d *h2Downstream) upgrade() string { return "" }

func (d *h2Downstream) started() bool { return d.headSent }

func (d *h2Downstream) errorCloses(int) bool { return false }

func (d *h2Downstream) writeHead(resp *ResponseHeader) error {
	h := d.w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	if v := h["Content-Length"]; len(v) == 1 {
		if _, err := strconv.ParseUint(v[0], 10, 63); err != nil {
			delete(h, "Content-Length")
		}
	}
	d.w.WriteHeader(resp.Status)
	d.headSent = true
	return nil
}

func (d *h2Downstream) write(p []byte) error {
	_, err := d.w.Write(p)
	return err
}

func (d *h2Downstream) flush() error {
	if d.flusher != nil {
		d.flusher.Flush()
	}
	return nil
}

func (d *h2Downstream) finish(trailer http.Header) error {
	if len(trailer) > 0 {
		h := d.w.Header()
		for k, v := range trailer {
			h[http.TrailerPrefix+k] = v
		}
	}
	return nil
}

// abort resets the stream: the client sees the response end in error
// rather than a truncated body that looks complete.
func (d *h2Downstream) abort() {
	if d.headSent {
		d.aborted = true
	}
}

// limitReader fails with a body-too-large error past n bytes.
type limitReader struct {
	r io.Reader
	n int64
}

var errBodyTooLarge = &Error{Kind: KindBodyTooLarge, Source: Downstream, Err: errors.New("request body over limit")}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, errBodyTooLarge
	}
	return n, err
}
