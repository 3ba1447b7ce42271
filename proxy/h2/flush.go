package h2

import (
	"runtime"
	"time"
)

// A response's flush is left to the connection's flusher, not made by the
// stream that ends or flushes, when other streams of the connection are
// running. The flusher yields once before it writes, so the streams that
// are already runnable (their upstreams answered in the same poll of the
// network) add their frames to the buffer first, and one write, one TLS
// record, carries them all. With one stream running nothing waits: that
// stream flushes at once, as before.
//
// Under h2load -c10 -m10 this takes the writes to the client from one per
// response to about one per three (bench/README.md, issue 18).
//
// The flusher belongs to its connection like the stream workers: it is
// started on the first deferred flush, counted in handlers, and ends with
// the connection or after workerIdle without a flush.

// unlockWriteStream is unlockWrite for a stream's own flush (Flush, Finish):
// the flush is deferred to the flusher when other streams are running. It
// returns the connection's write error as it stands when wmu is released:
// that of the flush it made itself, if any (TestFinishReportsFailedFlush).
func (c *Conn) unlockWriteStream() error {
	if c.flushWanted && c.wwait.Load() == 0 && c.werr == nil {
		if c.flushQueued {
			// The flusher has not written yet: it takes these frames too.
			c.flushWanted = false
			c.wmu.Unlock()
			return nil
		}
		c.mu.Lock()
		others := c.running > 1 && !c.closing
		c.mu.Unlock()
		if others {
			c.flushWanted = false
			c.flushQueued = true
			if !c.flusherUp {
				c.flusherUp = true
				c.handlers.Add(1)
				go c.flusher()
			}
			select {
			case c.flushKick <- struct{}{}:
			default: // a kick is pending already
			}
			c.wmu.Unlock()
			return nil
		}
	}
	if c.flushWanted && c.wwait.Load() == 0 {
		c.flushLocked()
	}
	err := c.werr
	c.wmu.Unlock()
	return err
}

// flusher makes the deferred flushes until the connection ends or none was
// asked for during workerIdle.
func (c *Conn) flusher() {
	defer c.handlers.Done()
	idle := time.NewTimer(time.Duration(workerIdle.Load()))
	defer idle.Stop()
	flushed := false
	for {
		select {
		case <-c.flushKick:
		case <-c.ctx.Done():
			return
		case <-idle.C:
			c.lockWrite()
			if !flushed && !c.flushQueued {
				c.flusherUp = false
				c.unlockWrite() // a flush left to the next writer is made
				return
			}
			c.unlockWrite()
			flushed = false
			idle.Reset(time.Duration(workerIdle.Load()))
			continue
		}
		// Let the streams that are runnable now write before the flush.
		runtime.Gosched()
		c.lockWrite()
		if c.flushQueued {
			c.flushQueued = false
			c.flushWanted = true
		}
		// Flushes, or leaves it to a writer that waits for the lock: as
		// every holder does, so a flush left to the next one is never lost.
		c.unlockWrite()
		flushed = true
	}
}
