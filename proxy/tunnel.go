package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingora-go/pingora-go/proxy/h1"
)

// tunnel completes an HTTP/1.1 Upgrade (WebSocket and the like): the 101
// response goes to the client and both connections are joined until both
// directions end. The upstream connection is never pooled afterwards.
func (s *Server[C]) tunnel(sess *Session, ctx C, hx *h1Exchange, resp *ResponseHeader) error {
	d, ok := sess.ds.(*h1Downstream)
	if !ok || sess.upgrade == "" {
		hx.release(false)
		return newError(KindInvalidResponse, Upstream, errors.New("101 Switching Protocols to a request that did not upgrade"))
	}
	upgrade := resp.Header["Upgrade"]
	if !upgradeAccepted(sess.upgrade, upgrade) {
		// Formatted first: upgrade is the connection's head, which
		// release recycles with it (upConnPool).
		err := newError(KindInvalidResponse, Upstream, fmt.Errorf("101 Switching Protocols to %q, not to the offered %q", upgrade, sess.upgrade))
		hx.release(false)
		return err
	}
	stripHopByHop(resp.Header)
	if p := s.ph.upResponse; p != nil {
		if err := p.UpstreamResponseFilter(sess, resp, ctx); err != nil {
			hx.release(false)
			return err
		}
	}
	if err := s.filterResponse(sess, resp); err != nil {
		hx.release(false)
		return err
	}
	resp.Header["Connection"], resp.Header["Upgrade"] = connUpgrade, upgrade
	if we := hx.writerError(true); we != nil {
		hx.release(false)
		return we
	}
	h1.WriteResponseHead(d.c.bw, 1, http.StatusSwitchingProtocols, resp.Header)
	d.headSent, d.keepAlive, d.broken = true, false, true
	sess.Status = http.StatusSwitchingProtocols
	sess.UpstreamTTFB = time.Since(sess.Start)
	if err := d.sendBuffered(); err != nil {
		hx.release(false)
		return classifyIO(err, Downstream)
	}
	d.sm.reset(false) // a tunnel moves at its application's pace
	upNC, upBR := hx.hijack()
	defer hx.freeSlot() // a tunnel holds its connection to the peer until it ends
	defer upNC.Close()
	s.metrics.tunnels.Inc()
	defer s.metrics.tunnels.Dec()
	d.dl.setRead(d.c.nc, time.Time{})
	t := &tunnelPair{idle: s.cfg.Downstream.TunnelIdleTimeout}
	t.touch()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sess.BytesIn = t.pipe(upNC, d.c.nc, d.c.br)
	}()
	sess.BytesOut = t.pipe(d.c.nc, upNC, upBR)
	wg.Wait()
	return nil
}

// tunnelWaitBuf is the buffer a tunnel direction waits for its next bytes
// with; it takes a pooled copyBufSize one only while bytes keep coming (a
// read filled the buffer it had) and gives it back at the first read that
// does not fill it. Tunnels are mostly idle: holding 32 KiB each way for a
// tunnel's life made 4,000 idle WebSocket tunnels hold 250 MB.
const tunnelWaitBuf = 2 << 10

// tunnelPair tracks activity across both directions, so a direction that is
// quiet while the other is busy does not end the tunnel.
type tunnelPair struct {
	idle time.Duration
	last atomic.Int64 // unix nanoseconds of the last byte either way
}

func (t *tunnelPair) touch() { t.last.Store(time.Now().UnixNano()) }

// pipe copies src (after what br has buffered) to dst until src ends, then
// half-closes dst so the other side sees the end of this direction.
func (t *tunnelPair) pipe(dst, src net.Conn, br *bufio.Reader) int64 {
	var total int64
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		w, err := dst.Write(b)
		br.Discard(w)
		total += int64(w)
		if err != nil {
			src.Close()
			return total
		}
	}
	small := make([]byte, tunnelWaitBuf)
	buf := small
	var bp *[]byte // the pooled buffer, while the direction is busy
	defer func() {
		if bp != nil {
			putBuf(bp)
		}
	}()
	for {
		src.SetReadDeadline(time.Now().Add(t.idle))
		n, err := src.Read(buf)
		if n > 0 {
			t.touch()
			dst.SetWriteDeadline(time.Now().Add(t.idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return total
			}
			total += int64(n)
		}
		switch {
		case bp == nil && n == len(buf):
			bp = getBuf()
			buf = *bp
		case bp != nil && n < len(buf):
			putBuf(bp)
			bp, buf = nil, small
		}
		if err != nil {
			if isTimeout(err) && time.Since(time.Unix(0, t.last.Load())) < t.idle {
				continue // the other direction is busy
			}
			if errors.Is(err, io.EOF) {
				closeWrite(dst)
			} else {
				dst.Close()
				src.Close()
			}
			return total
		}
	}
}

// closeWrite half-closes c when it supports it (TCP, TLS), else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
