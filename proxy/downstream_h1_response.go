package proxy

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/pingora-go/pingora-go/proxy/h1"
)

// The response side of an HTTP/1.1 client connection: the head and its
// framing, the body, trailers, and the end of a response.

// trailersFollow: see downstream. A client accepts trailers with
// "TE: trailers" (RFC 9110 section 10.1.4); an HTTP/1.0 one cannot take
// chunked.
func (d *h1Downstream) trailersFollow() {
	d.trailers = d.req.Minor == 1 && httpguts.HeaderValuesContainsToken(d.rh.Header["Te"], "trailers")
}

// writeHead sends the status line and fields, choosing the body framing:
// Content-Length when known, else chunked for HTTP/1.1, else read until
// close.
func (d *h1Downstream) writeHead(resp *ResponseHeader) error {
	d.frame(resp)
	bw := d.c.bw
	head := h1.AppendResponseHead(bw.AvailableBuffer(), d.req.Minor, resp.Status, resp.Header)
	d.armWrite(len(head))
	bw.Write(head)
	d.headSent = true
	return nil
}

// chunkOverhead bounds what ChunkWriter adds around a chunk's data: its
// size in hex and two CRLFs.
const chunkOverhead = 16 + 4

// armWrite refreshes the write idle deadline when putting n more bytes
// into the connection's buffer writes to the socket (the buffer is too
// full to take them): only a socket write can wait, and refreshing costs a
// clock reading, three a response otherwise.
func (d *h1Downstream) armWrite(n int) {
	if n > d.c.bw.Available() {
		d.dl.refreshWrite(d.c.nc, d.cfg.WriteIdleTimeout)
	}
}

// pipelinedBehind reports whether, while the server drains, the client's
// next request was already read when this bodiless one began (pipelined
// behind it) and the drain linger has not passed: it is answered before
// the connection closes, instead of being dropped for the client to
// retry. The linger bounds how long a client that keeps pipelining holds
// a draining connection. (The buffer is not looked at here: the client
// watch may be reading it.)
func (d *h1Downstream) pipelinedBehind() bool {
	return d.pipelined && time.Now().Before(d.c.drainDeadline())
}

// frame chooses the body framing of resp and sets the fields that say it
// (Content-Length, Transfer-Encoding, Connection).
func (d *h1Downstream) frame(resp *ResponseHeader) {
	h := resp.Header
	st := resp.Status
	d.noBody = d.req.Method == http.MethodHead || st == http.StatusNoContent || st == http.StatusNotModified || st < 200
	if v := h["Content-Length"]; len(v) == 1 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
			d.declared = n
		} else {
			delete(h, "Content-Length")
		}
	} else if len(v) > 1 {
		delete(h, "Content-Length")
	}
	if d.c.draining.Load() && !d.pipelinedBehind() {
		d.keepAlive = false
	}
	if v := h["Connection"]; len(v) == 1 && v[0] == "close" {
		d.keepAlive = false // a proxy-made answer that ends the connection (writeError)
	}
	switch {
	case d.noBody:
		if st == http.StatusNoContent || st < 200 {
			delete(h, "Content-Length")
		}
	case d.declared >= 0 && !d.trailers:
	case d.req.Minor == 1:
		// A body with trailers to come goes chunked, as nginx sends it:
		// its declared length is still checked (write, finish).
		delete(h, "Content-Length")
		h["Transfer-Encoding"] = chunkedTE
		d.chunked = true
	default:
		d.keepAlive = false // the body ends when the connection closes
	}
	if !d.chunked {
		// Only a chunked body carries trailers: announce none that will
		// not come (a client without "TE: trailers" keeps the length of
		// an HTTP/2 origin's response, an HTTP/1.0 one gets no chunks).
		delete(h, "Trailer")
	}
	if !d.keepAlive {
		h["Connection"] = closeConn
	} else if d.req.Minor == 0 {
		h["Connection"] = keepAliveConn
	}
}

// writeHeld sends the head and a body held in memory (see heldWriter).
// Over plain TCP, with the body framed by its Content-Length and nothing
// waiting in the connection's buffer, head and blocks go out in one
// gathered write (writev) from where they are: the head is built in the
// buffer's free space, and neither is copied into the buffer. Otherwise
// they go through the buffer as writeHead and write send them.
func (d *h1Downstream) writeHeld(resp *ResponseHeader, blocks [][]byte) error {
	d.frame(resp)
	var n int64
	for _, b := range blocks {
		n += int64(len(b))
	}
	bw := d.c.bw
	if d.noBody || d.chunked || d.c.tls != nil || n != d.declared || bw.Buffered() > 0 {
		d.dl.refreshWrite(d.c.nc, d.cfg.WriteIdleTimeout)
		h1.WriteResponseHead(bw, d.req.Minor, resp.Status, resp.Header)
		d.headSent = true
		for _, b := range blocks {
			if err := d.write(b); err != nil {
				return err
			}
		}
		return nil
	}
	// The head lives in bw's free space only until bw is written to again:
	// it is sent before that, by the gathered write below.
	head := h1.AppendResponseHead(bw.AvailableBuffer(), d.req.Minor, resp.Status, resp.Header)
	d.iov = append(append(d.iov, head), blocks...)
	d.headSent, d.written = true, d.written+n
	d.dl.refreshWrite(d.c.nc, d.cfg.WriteIdleTimeout)
	var err error
	if vw, ok := d.c.nc.(vecWriter); ok {
		_, err = vw.writev(d.iov)
	} else {
		d.out = d.iov // WriteTo consumes d.out; d.iov keeps the backing array
		_, err = d.out.WriteTo(d.c.nc)
	}
	clear(d.iov) // keep no stored block alive
	d.iov, d.out = d.iov[:0], nil
	if err != nil {
		d.broken = true
	}
	return err
}

var (
	closeConn     = []string{"close"}
	keepAliveConn = []string{"keep-alive"}
)

func (d *h1Downstream) write(p []byte) error {
	if d.noBody {
		return nil
	}
	d.written += int64(len(p))
	if d.declared >= 0 && d.written > d.declared {
		d.broken = true
		return errors.New("proxy: response body longer than its Content-Length")
	}
	if d.chunked {
		d.armWrite(len(p) + chunkOverhead)
	} else {
		d.armWrite(len(p))
	}
	var err error
	if d.chunked {
		_, err = h1.ChunkWriter{W: d.c.bw}.Write(p)
	} else {
		_, err = d.c.bw.Write(p)
	}
	if err != nil {
		d.broken = true
	}
	return err
}

// blocked: the kernel's socket buffers take a small body, whether the
// client reads or not.
func (d *h1Downstream) blocked(int) bool { return false }

func (d *h1Downstream) flush() error {
	if err := d.sendBuffered(); err != nil {
		d.broken = true
		return err
	}
	return nil
}

// sendBuffered writes what the connection's buffer holds, under a fresh
// write idle deadline: every write to the client socket goes through
// armWrite or here, as the deadline left by an earlier response may have
// passed while the connection was idle.
func (d *h1Downstream) sendBuffered() error {
	if d.c.bw.Buffered() == 0 {
		return nil
	}
	d.dl.refreshWrite(d.c.nc, d.cfg.WriteIdleTimeout)
	return d.c.bw.Flush()
}

func (d *h1Downstream) finish(trailer http.Header) error {
	switch {
	case d.noBody:
	case d.declared >= 0 && d.written != d.declared:
		d.broken = true // chunked too: the body never ends
		return errors.New("proxy: response body shorter than its Content-Length")
	case d.chunked:
		d.armWrite(chunkOverhead + trailerSize(trailer))
		h1.ChunkWriter{W: d.c.bw}.Close(trailer)
	}
	return d.flush()
}

func (d *h1Downstream) abort() {
	d.broken = true
	d.keepAlive = false
	d.sendBuffered()
}

// trailerSize is what a trailer section takes on the wire, or more.
func trailerSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
