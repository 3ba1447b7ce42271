package wiretest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/wire"
)

// A faulty connection sits between the dialer's caller and the real
// connection:
//
//	caller ⇄ net.Pipe ⇄ [out: read → queue → write] ⇄ real conn
//	                    [in:  write ← queue ← read]
//
// Each direction has a reader goroutine that cuts the byte stream into
// units (whole wire frames, or raw chunks for other protocols), drops or
// stamps them, and a writer goroutine that delivers each unit when it is
// due and its link is not cut. A clean close travels the same way, after
// the bytes before it.

// faultConn is one faulty connection.
type faultConn struct {
	f        *Faults
	from, to string
	user     net.Conn // the caller's end of the pipe
	inner    net.Conn // our end of the pipe
	real     net.Conn
	isWire   chan bool // decided by the out direction's first byte
	once     sync.Once
	dead     chan struct{} // closed by abort
}

// wrap starts the four goroutines of a faulty connection over real.
func (f *Faults) wrap(real net.Conn, out, in Link) (net.Conn, error) {
	user, inner := net.Pipe()
	c := &faultConn{f: f, from: out.From, to: out.To, user: user, inner: inner, real: real, isWire: make(chan bool, 1), dead: make(chan struct{})}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		real.Close()
		return nil, fmt.Errorf("wiretest: faults closed")
	}
	f.conns[c] = struct{}{}
	f.wg.Add(4)
	f.mu.Unlock()
	dirs := []*direction{
		{c: c, link: out, src: inner, dst: real, classify: true},
		{c: c, link: in, src: real, dst: inner},
	}
	var done sync.WaitGroup
	done.Add(4)
	for _, d := range dirs {
		d.q.wake = make(chan struct{}, 1) // one pending wake-up is enough
		go func() { defer f.wg.Done(); defer done.Done(); d.readLoop() }()
		go func() { defer f.wg.Done(); defer done.Done(); d.writeLoop() }()
	}
	go func() { // forget c once all four have stopped
		done.Wait()
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
	}()
	return &userConn{Conn: user, real: real}, nil
}

// abort closes both ends at once, dropping what is queued.
func (c *faultConn) abort() {
	c.once.Do(func() {
		close(c.dead)
		c.user.Close()
		c.inner.Close()
		c.real.Close()
	})
}

// userConn is the caller's end, reporting the real connection's addresses.
type userConn struct {
	net.Conn
	real net.Conn
}

func (u *userConn) LocalAddr() net.Addr  { return u.real.LocalAddr() }
func (u *userConn) RemoteAddr() net.Addr { return u.real.RemoteAddr() }

// unit is a frame or chunk waiting in a queue.
type unit struct {
	b   []byte
	due time.Time
}

// queue holds one direction's units in order.
type queue struct {
	mu    sync.Mutex
	units []unit
	bytes int
	eof   bool // the source ended cleanly after the queued units
	wake  chan struct{}
}

// direction is one way through a faulty connection.
type direction struct {
	c        *faultConn
	link     Link
	src      io.Reader
	dst      net.Conn
	classify bool // this is the dialer's side: its first byte says wire or not
	q        queue
}

// readLoop cuts the source into units until it ends.
func (d *direction) readLoop() {
	wireConn := d.decide()
	var pending []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := d.src.Read(buf)
		pending = append(pending, buf[:n]...)
		for len(pending) > 0 {
			k := len(pending) // a raw chunk: everything read so far
			if wireConn {
				if k = frameEnd(pending, d.c.f.cfg.MaxQueued); k == 0 {
					break
				}
			}
			d.push(pending[:k:k], wireConn)
			pending = pending[k:]
		}
		if err != nil {
			d.end(err == io.EOF)
			return
		}
	}
}

// decide tells whether this direction carries wire frames. The dialer's
// side reads its first byte (wire.ProtoRPC means wire, and that byte is a
// unit of its own); the other side waits for that decision.
func (d *direction) decide() bool {
	if !d.classify {
		w, ok := <-d.c.isWire
		d.c.isWire <- w // leave it for anyone else
		return ok && w
	}
	var first [1]byte
	n, _ := io.ReadFull(d.src, first[:])
	isWire := n == 1 && first[0] == wire.ProtoRPC
	d.c.isWire <- isWire
	if n == 1 {
		d.push([]byte{first[0]}, false)
	}
	return isWire
}

// frameEnd returns the length of the whole wire frame at the start of b, or
// 0 if b does not hold one yet. A length prefix beyond max (garbage, which
// the peer will refuse) makes everything read so far a unit.
func frameEnd(b []byte, max int) int {
	if len(b) < 4 {
		return 0
	}
	n := 4 + int(binary.BigEndian.Uint32(b))
	switch {
	case n > max:
		return len(b)
	case len(b) < n:
		return 0
	}
	return n
}

// push queues a unit, unless the link drops it.
func (d *direction) push(b []byte, frame bool) {
	lf, _ := d.c.f.watch(d.link)
	if frame && d.c.f.chance(lf.DropFrames) {
		d.c.f.droppedFrames.Add(1)
		return
	}
	due := d.c.f.cfg.Clock.Now().Add(lf.Delay)
	d.q.mu.Lock()
	if n := len(d.q.units); n > 0 && d.q.units[n-1].due.After(due) {
		due = d.q.units[n-1].due // never reorder
	}
	d.q.units = append(d.q.units, unit{b: append([]byte(nil), b...), due: due})
	d.q.bytes += len(b)
	over := d.q.bytes > d.c.f.cfg.MaxQueued
	d.q.mu.Unlock()
	d.c.f.queued.Add(1)
	d.signal()
	if over {
		d.c.abort()
	}
}

// end records that the source stopped: cleanly (deliver what is queued,
// then close) or not (close now).
func (d *direction) end(clean bool) {
	if !clean {
		d.c.abort()
	}
	d.q.mu.Lock()
	d.q.eof = true
	d.q.mu.Unlock()
	d.signal()
}

func (d *direction) signal() {
	select {
	case d.q.wake <- struct{}{}:
	default:
	}
}

// writeLoop delivers units as they fall due and their link is whole.
func (d *direction) writeLoop() {
	for {
		lf, changed := d.c.f.watch(d.link)
		d.q.mu.Lock()
		var head *unit
		if len(d.q.units) > 0 {
			head = &d.q.units[0]
		}
		eof := d.q.eof
		d.q.mu.Unlock()
		switch {
		case head == nil && eof:
			d.dst.Close() // the close reaches the other side after the data
			return
		case head == nil || lf.Cut:
			if !d.wait(changed, 0) {
				return
			}
		default:
			if wait := head.due.Sub(d.c.f.cfg.Clock.Now()); wait > 0 {
				if !d.wait(changed, wait) {
					return
				}
				continue
			}
			if !d.deliver() {
				return
			}
		}
	}
}

// wait blocks until the queue or the faults change, or for d if d > 0; it
// returns false when the connection is gone.
func (d *direction) wait(changed <-chan struct{}, dur time.Duration) bool {
	var timeout <-chan time.Time
	if dur > 0 {
		t := d.c.f.cfg.Clock.NewTimer(dur)
		defer t.Stop()
		timeout = t.C()
	}
	select {
	case <-d.q.wake:
	case <-changed:
	case <-timeout:
	case <-d.c.dead:
		return false
	}
	return true
}

// deliver writes the head unit.
func (d *direction) deliver() bool {
	d.q.mu.Lock()
	u := d.q.units[0]
	d.q.units = d.q.units[1:]
	d.q.bytes -= len(u.b)
	d.q.mu.Unlock()
	d.c.f.queued.Add(-1)
	if _, err := d.dst.Write(u.b); err != nil {
		d.c.abort()
		return false
	}
	return true
}
