package proxy

import (
	"fmt"
	"os"
	"time"

	"github.com/pingora-go/pingora-go/proxy/h2"
)

// h1BodyReader reads the request body for the engine: it sends
// "100 Continue" before the first read when the client asked for it, and
// applies the read idle timeout and the minimum receive rate.
type h1BodyReader struct {
	d       *h1Downstream
	started bool
	// minRate: the body is held to MinRecvRate (not a gRPC call); got
	// and waited are the bytes read and the time spent reading so far.
	minRate bool
	got     int64
	waited  time.Duration
}

// errSlowBody fails a request body sent under the minimum rate: a timeout,
// as a body read idle timeout is (408 when nothing was answered yet).
var errSlowBody = fmt.Errorf("proxy: request body sent under the minimum rate (min_recv_rate): %w", os.ErrDeadlineExceeded)

func (r *h1BodyReader) Read(p []byte) (int, error) {
	d := r.d
	if !r.started {
		r.started = true
		if d.req.ExpectContinue && !d.headSent {
			d.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := d.sendBuffered(); err != nil {
				return 0, err
			}
		}
	}
	if r.minRate {
		return r.readMetered(p)
	}
	d.dl.refreshRead(d.c.nc, d.cfg.ReadIdleTimeout)
	// After the deadline is set: either this sees the flag, or the read
	// sees the past deadline interruptBody sets after raising it.
	if d.intr.Load() {
		return 0, errBodyInterrupted
	}
	n, err := d.hb.Read(p)
	if err != nil && d.intr.Load() && isTimeout(err) {
		err = errBodyInterrupted // the body reads on (h1.Body.Read)
	}
	return n, err
}

// readMetered is Read held to the minimum receive rate: the read may take
// the grace period plus 1/MinRecvRate for each body byte read so far, less
// the time reading took so far (a read returns with the first bytes that
// arrive, so that is the time spent waiting for the client), and the
// idle timeout at most. It costs a deadline and two clock readings a
// read, where Read's lazy idle deadline costs one: bodies are read in
// 32 KiB pieces at most.
func (r *h1BodyReader) readMetered(p []byte) (int, error) {
	d := r.d
	budget := h2.RateBudget(d.cfg.MinRateGrace, d.cfg.MinRecvRate, r.got, r.waited)
	wait, rateBound := d.cfg.ReadIdleTimeout, false
	if budget < wait {
		wait, rateBound = max(budget, 0)+time.Nanosecond, true
	}
	start := monoNow()
	d.dl.setRead(d.c.nc, clockBase.Add(start+wait))
	if d.intr.Load() { // after the deadline, as in Read
		return 0, errBodyInterrupted
	}
	n, err := d.hb.Read(p)
	r.waited += monoNow() - start
	r.got += int64(n)
	if err != nil && isTimeout(err) {
		switch {
		case d.intr.Load():
			err = errBodyInterrupted
		case rateBound:
			d.slow(d.c.lc.Name, d.c.clientIP, "HTTP/1.1", h2.SlowRecv)
			err = errSlowBody
		}
	}
	return n, err
}

// interruptBody: see downstream. The reader runs on another goroutine and
// owns d.dl's read deadline meanwhile: the past deadline is set on the
// connection directly.
func (d *h1Downstream) interruptBody() {
	d.intr.Store(true)
	d.c.nc.SetReadDeadline(time.Unix(1, 0))
}

// resumeBody: see downstream. The deadline recorded is the past one, so
// whatever reads next sets its own.
func (d *h1Downstream) resumeBody() {
	d.intr.Store(false)
	d.dl.setRead(d.c.nc, time.Unix(1, 0))
}
