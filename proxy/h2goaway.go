package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// Two-phase GOAWAY (RFC 9113 §6.8) for downstream HTTP/2 connections.
//
// x/net's server drains with a single GOAWAY whose last_stream_id is the
// highest stream it has read: streams the client sent before it saw the
// GOAWAY but the server had not read yet are refused (golang/go#15386).
// h2Conn sits between x/net's framer and the connection (above TLS) and,
// on Shutdown, writes GOAWAY(last_stream_id 2^31-1) and a PING at the next
// frame boundary of the outbound stream. The client stops opening streams
// when it reads the GOAWAY and acknowledges the PING after it, so by the
// time x/net reads the PING ACK it has read every stream the client will
// ever send; only then does Shutdown let x/net send its own, final GOAWAY.

const (
	frameHeaderLen  = 9
	frameTypePing   = 0x6
	frameTypeGoAway = 0x7
	flagAck         = 0x1
	goAwayMaxRTT    = time.Second // longest wait for the PING ACK
)

// goAwayPingData is the opaque payload of our PING: random per process so
// it does not collide with x/net's own keep-alive PINGs.
var goAwayPingData = func() (d [8]byte) {
	binary.BigEndian.PutUint64(d[:], rand.Uint64())
	return d
}()

// goAwayFrames is GOAWAY(2^31-1, NO_ERROR) followed by PING(goAwayPingData).
var goAwayFrames = func() []byte {
	b := make([]byte, 0, 2*(frameHeaderLen+8))
	b = append(b, 0, 0, 8, frameTypeGoAway, 0, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, 1<<31-1)
	b = binary.BigEndian.AppendUint32(b, uint32(http2.ErrCodeNo))
	b = append(b, 0, 0, 8, frameTypePing, 0, 0, 0, 0, 0)
	return append(b, goAwayPingData[:]...)
}()

// frameScanner follows frame boundaries in one direction of an HTTP/2 byte
// stream: it assembles each 9-byte frame header and skips the payload.
type frameScanner struct {
	rem int                  // payload bytes of the current frame still to come
	hn  int                  // bytes of the next frame header seen so far
	hdr [frameHeaderLen]byte // the header being assembled, then the current frame's
}

// boundary reports whether the bytes seen so far end with a whole frame.
func (f *frameScanner) boundary() bool { return f.rem == 0 && f.hn == 0 }

// step consumes the start of p (which must not be empty): payload bytes of
// the current frame, or header bytes of the next one. It returns how many
// bytes it consumed, whether they were payload, and whether a frame header
// completed (f.hdr then holds it).
func (f *frameScanner) step(p []byte) (n int, payload, header bool) {
	if f.rem > 0 {
		n = min(f.rem, len(p))
		f.rem -= n
		return n, true, false
	}
	n = copy(f.hdr[f.hn:], p)
	f.hn += n
	if f.hn < frameHeaderLen {
		return n, false, false
	}
	f.hn = 0
	f.rem = int(f.hdr[0])<<16 | int(f.hdr[1])<<8 | int(f.hdr[2])
	return n, false, true
}

// h2Conn is the connection as the HTTP/2 server sees it. Writes are
// serialized (x/net writes from one goroutine at a time, the injection from
// another); Read is called by x/net's frame reader only.
type h2Conn struct {
	net.Conn

	wmu        sync.Mutex
	out        frameScanner
	wroteFrame bool // the server's first frame (SETTINGS) has started
	goneAway   bool // the server wrote a GOAWAY of its own: ours would raise last_stream_id
	requested  bool // startGoAway was called
	pending    bool // our frames wait for the next frame boundary

	in      frameScanner // starts inside the client preface
	inAck   bool         // the current inbound frame is a PING ACK of 8 bytes
	ackN    int
	ack     [8]byte
	pinged  atomic.Bool // our PING is on the wire
	done    chan struct{}
	doneOne sync.Once
}

// h2TLSConn is an h2Conn over TLS: x/net reads the TLS state through
// ConnectionState, as it would from the *tls.Conn itself.
type h2TLSConn struct{ h2Conn }

func (c *h2TLSConn) ConnectionState() tls.ConnectionState {
	return c.Conn.(*tls.Conn).ConnectionState()
}

// newH2Conn wraps nc, which must start with the client preface when read
// and carry nothing yet written by the HTTP/2 server. It returns the
// connection to serve and its control handle.
func newH2Conn(nc net.Conn) (net.Conn, *h2Conn) {
	var c *h2Conn
	var served net.Conn
	if _, ok := nc.(*tls.Conn); ok {
		t := &h2TLSConn{}
		c, served = &t.h2Conn, t
	} else {
		c = &h2Conn{}
		served = c
	}
	c.Conn = nc
	c.in.rem = len(http2.ClientPreface)
	c.done = make(chan struct{})
	return served, c
}

// startGoAway sends GOAWAY(2^31-1) and our PING at the next outbound frame
// boundary, without waiting for a write in progress. done is closed when
// the PING ACK arrives or the connection ends. Calls after the first do
// nothing.
func (c *h2Conn) startGoAway() { go c.requestGoAway() }

func (c *h2Conn) requestGoAway() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.requested {
		return
	}
	c.requested = true
	if c.wroteFrame && c.out.boundary() {
		c.injectLocked()
	} else {
		c.pending = true // the next Write crosses the boundary
	}
}

// acked is closed when the client acknowledged our PING or the connection
// ended.
func (c *h2Conn) acked() <-chan struct{} { return c.done }

func (c *h2Conn) finish() { c.doneOne.Do(func() { close(c.done) }) }

func (c *h2Conn) injectLocked() error {
	c.pending = false
	if c.goneAway {
		c.finish()
		return nil
	}
	c.pinged.Store(true)
	if _, err := c.Conn.Write(goAwayFrames); err != nil {
		c.finish()
		return err
	}
	return nil
}

func (c *h2Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.pending {
		return c.writeInjecting(p)
	}
	n, err := c.Conn.Write(p)
	c.sawOut(p[:n])
	return n, err
}

// writeInjecting writes p with our frames inserted at its first frame
// boundary, if it has one.
func (c *h2Conn) writeInjecting(p []byte) (int, error) {
	off := c.toBoundary(p)
	if off < 0 {
		n, err := c.Conn.Write(p)
		c.sawOut(p[:n])
		return n, err
	}
	n := 0
	if off > 0 {
		var err error
		n, err = c.Conn.Write(p[:off])
		c.sawOut(p[:n])
		if err != nil {
			return n, err
		}
	}
	if err := c.injectLocked(); err != nil {
		return n, err
	}
	if off == len(p) {
		return n, nil
	}
	m, err := c.Conn.Write(p[off:])
	c.sawOut(p[off : off+m])
	return off + m, err
}

// toBoundary returns how many bytes of p complete the current frame
// (0 at a boundary), or -1 if p ends inside a frame. Only a boundary after
// the server's first frame counts: the server preface must come first.
func (c *h2Conn) toBoundary(p []byte) int {
	s, seen := c.out, c.wroteFrame
	if seen && s.boundary() {
		return 0
	}
	for i := 0; i < len(p); {
		n, _, hdr := s.step(p[i:])
		i += n
		seen = seen || hdr
		if seen && s.boundary() {
			return i
		}
	}
	return -1
}

func (c *h2Conn) sawOut(p []byte) {
	for len(p) > 0 {
		n, _, hdr := c.out.step(p)
		p = p[n:]
		if hdr {
			c.wroteFrame = true
			if c.out.hdr[3] == frameTypeGoAway {
				c.goneAway = true
			}
		}
	}
}

func (c *h2Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	for q := p[:n]; len(q) > 0; {
		k, payload, hdr := c.in.step(q)
		switch {
		case hdr:
			h := &c.in.hdr
			c.inAck = h[3] == frameTypePing && h[4]&flagAck != 0 && c.in.rem == 8
			c.ackN = 0
		case payload && c.inAck:
			c.ackN += copy(c.ack[c.ackN:], q[:k])
			if c.ackN == len(c.ack) {
				c.inAck = false
				if c.ack == goAwayPingData && c.pinged.Load() {
					c.finish()
				}
			}
		}
		q = q[k:]
	}
	return n, err
}

func (c *h2Conn) Close() error {
	c.finish()
	return c.Conn.Close()
}
