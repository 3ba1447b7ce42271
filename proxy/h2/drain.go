package h2

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"time"

	"golang.org/x/net/http2"
)

// How a connection ends: GOAWAY after a connection error, the two-phase
// drain of Shutdown, the idle timeout, and the teardown of its streams.

// goAway ends the connection after a connection error; Serve lingers
// before it returns. The reader goroutine's only.
func (c *Conn) goAway(code http2.ErrCode, debug string) {
	c.mu.Lock()
	last := c.maxClientID
	c.closing = true
	c.mu.Unlock()
	c.lockWrite()
	c.fr.WriteGoAway(last, code, []byte(debug))
	c.flushWanted = true
	c.unlockWrite()
	c.lingering = true
}

// lingerMax bounds what a lingering close reads and discards.
const lingerMax = 1 << 20

// linger shuts the write side after a GOAWAY for an error and reads and
// discards what the client still sends, for up to DrainWait and lingerMax
// bytes (nginx's lingering close). Closed with the client's frames
// unread, the socket would send a reset, and the client's kernel may drop
// the GOAWAY before the client read it: a client that flooded would never
// learn why.
func (c *Conn) linger() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.nc.SetReadDeadline(time.Now().Add(c.cfg.DrainWait))
	io.CopyN(io.Discard, c.r, lingerMax)
}

// drainPing is the payload of the PING that follows a drain's first GOAWAY:
// random per process so it does not collide with a client's own PINGs.
var drainPing = func() (d [8]byte) {
	binary.BigEndian.PutUint64(d[:], rand.Uint64())
	return d
}()

// Shutdown drains the connection (RFC 9113 §6.8, two phases): a GOAWAY
// that still admits every stream, and a PING. When the PING's ACK arrives
// (or after a second), every stream the client sent before it saw the
// GOAWAY has been read; a second GOAWAY fixes the last stream served, and
// the connection closes once those finish. Safe from any goroutine.
func (c *Conn) Shutdown() {
	c.mu.Lock()
	if c.drain != 0 || c.closing {
		c.mu.Unlock()
		return
	}
	c.drain = drainPinged
	c.drainTimer = time.AfterFunc(c.cfg.DrainWait, c.finalGoAway)
	c.mu.Unlock()
	c.lockWrite()
	c.fr.WriteGoAway(1<<31-1, http2.ErrCodeNo, nil)
	c.fr.WritePing(false, drainPing)
	c.flushWanted = true
	c.unlockWrite()
}

// finalGoAway sends the drain's second GOAWAY.
func (c *Conn) finalGoAway() {
	c.mu.Lock()
	if c.drain == drainFinal || c.closing {
		c.mu.Unlock()
		return
	}
	if c.drainTimer != nil {
		c.drainTimer.Stop()
	}
	c.drain = drainFinal
	c.lastStreamID = c.maxClientID
	last := c.lastStreamID
	c.mu.Unlock()
	if testHookFinalGoAway != nil {
		testHookFinalGoAway()
	}
	c.lockWrite()
	c.fr.WriteGoAway(last, http2.ErrCodeNo, nil)
	c.flushWanted = true
	c.unlockWrite()
	// Only now may the connection end: a stream that finished since
	// drainFinal was set must not shut the write side before this
	// GOAWAY is in the buffer (the client would read EOF without it).
	c.mu.Lock()
	c.finalSent = true
	c.mu.Unlock()
	c.maybeDone()
}

// testHookFinalGoAway, when set by a test, runs in finalGoAway between
// fixing the last stream and writing the GOAWAY that names it.
var testHookFinalGoAway func()

// maybeDone ends a drained connection (Shutdown, or the client's GOAWAY)
// once no stream is left: its write side shuts (the client reads every
// frame, then EOF, not a reset); the reader sees the client close, or
// times out after DrainWait.
func (c *Conn) maybeDone() {
	c.mu.Lock()
	done := c.finalSent && len(c.streams) == 0 && c.running == 0 && !c.closing
	if done {
		c.closing = true
	}
	c.mu.Unlock()
	if done {
		c.lockWrite()
		c.flushLocked()
		if c.werr == nil {
			c.werr = errConnClosed // nothing more is written
		}
		c.wmu.Unlock()
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
			c.nc.SetReadDeadline(time.Now().Add(c.cfg.DrainWait))
		} else {
			c.nc.Close()
		}
	}
}

// onIdle drains a connection that had no stream for IdleTimeout.
func (c *Conn) onIdle() {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	idle := len(c.streams) == 0 && c.running == 0
	wait := c.cfg.IdleTimeout
	if idle {
		wait -= time.Since(c.lastIdle)
	}
	if !idle || wait > 0 {
		c.idleTimer.Reset(max(wait, time.Second))
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.Shutdown()
}

// teardown ends every stream after the reader stopped.
func (c *Conn) teardown(err error) {
	c.mu.Lock()
	c.closing = true
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	if c.drainTimer != nil {
		c.drainTimer.Stop()
	}
	streams := make([]*Stream, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
	}
	clear(c.streams)
	c.mu.Unlock()
	c.cancel(errConnClosed)
	for _, st := range streams {
		st.fail(errConnClosed, false)
	}
	c.lockWrite()
	c.flushLocked()
	if c.werr == nil {
		c.werr = errConnClosed
	}
	c.wmu.Unlock()
}
