package proxy

import "time"

// h1BodyReader reads the request body for the engine: it sends
// "100 Continue" before the first read when the client asked for it, and
// applies the read idle timeout.
type h1BodyReader struct {
	d       *h1Downstream
	started bool
}

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
