package proxy

import (
	"errors"
	"io"
	"sync/atomic"
	"syscall"

	"github.com/pingora-go/pingora-go/proxy/h1"
)

// spliceMin is the smallest rest of a body that is spliced: under it, one
// read and one write through the relay buffer cost less than the pipe's
// two splices and their waits.
const spliceMin = 16 << 10

// splicedBodies counts the bodies handed to splice, for tests.
var splicedBodies atomic.Int64

// spliceSide tells which socket a splice relay failed on.
type spliceSide int

const (
	spliceSrc spliceSide = iota // the upstream
	spliceDst                   // the client
)

// spliceErr is a splice relay's failure and the side it came from.
type spliceErr struct {
	side spliceSide
	err  error
}

// spliceRelay sends the rest of a response body with splice(2)
// (splice_linux.go) when nothing in the process needs to see it: HTTP/1.1
// on both sides over plain sockets, a body framed by Content-Length on
// both sides, no body filter, no cache fill, at least spliceMin bytes to
// go. The body bytes already in the upstream connection's buffer are
// written first, with the head. done reports that it relayed the body (or
// failed, with err); otherwise the copy loop relays what is left, which
// may be all of it.
func (s *Server[C]) spliceRelay(sess *Session, ex exchange) (done bool, err error) {
	if s.cfg.NoSplice || s.ph.responseBody != nil || sess.cache.storing || sess.cache.clientDone {
		return false, nil
	}
	hx, ok := ex.(*h1Exchange)
	if !ok || hx.c == nil || hx.c.rc == nil {
		return false, nil
	}
	usc, plain := hx.c.nc.(syscall.Conn)
	if !plain { // TLS
		return false, nil
	}
	d, ok := sess.ds.(*h1Downstream)
	if !ok || d.c.tls != nil || d.chunked || d.noBody || d.declared < 0 {
		return false, nil
	}
	sc, ok := d.c.nc.(syscall.Conn)
	if !ok {
		return false, nil
	}
	body := hx.c.body
	left := body.LengthLeft()
	buffered := body.Buffered()
	if left-int64(buffered) < spliceMin || d.declared-d.written != left {
		return false, nil
	}
	drc, err := sc.SyscallConn()
	if err != nil {
		return false, nil
	}
	// Through SyscallConn, not hx.c.rc (the peek's): the splice waits
	// under the connection's deadlines, which must then be on the poller.
	urc, err := usc.SyscallConn()
	if err != nil {
		return false, nil
	}
	if buffered > 0 {
		b, _ := hx.c.br.Peek(buffered)
		if err := d.write(b); err != nil {
			ex.release(false)
			d.abort()
			return true, classifyIO(err, Downstream)
		}
		hx.c.br.Discard(buffered)
		body.Skip(int64(buffered))
		sess.BytesOut += int64(buffered)
	}
	if err := d.flush(); err != nil {
		ex.release(false)
		d.abort()
		return true, classifyIO(err, Downstream)
	}
	rest := left - int64(buffered)
	written, handled, fail := spliceBody(drc, urc, rest, d.sm, func(side spliceSide) {
		if side == spliceSrc {
			hx.c.dl.refreshRead(hx.c.nc, hx.t.ReadIdle)
		} else {
			d.dl.refreshWrite(d.c.nc, d.cfg.WriteIdleTimeout)
		}
	})
	if !handled { // no pipe: the copy loop sends the rest
		return false, nil
	}
	splicedBodies.Add(1)
	s.metrics.spliced.Inc()
	d.written += written
	sess.BytesOut += written
	if fail != nil {
		ex.release(false)
		d.abort()
		if fail.side == spliceSrc {
			if errors.Is(fail.err, io.ErrUnexpectedEOF) {
				return true, classifyIO(h1.ErrUnexpectedEOF, Upstream)
			}
			return true, classifyIO(fail.err, Upstream)
		}
		return true, classifyIO(fail.err, Downstream)
	}
	body.Skip(written)
	ex.release(true)
	if err := d.finish(nil); err != nil {
		d.abort()
		return true, classifyIO(err, Downstream)
	}
	return true, nil
}
