package h2

import (
	"sync/atomic"
	"time"
)

// A stream's handler runs on a goroutine of its connection that ran one
// before, when one is idle, not on a new one. A new goroutine starts with
// a small stack, and a handler's grows several times during a request
// (the TLS record encryption of a flush alone needs more than the start
// size): the copies took 15% of the CPU of small requests over TLS, and
// the goroutine creation 5% more. A worker keeps its grown stack between
// streams (the garbage collector may still shrink an idle one). grpc-go's
// stream workers do the same.
//
// Workers belong to their connection: they end with it, so Serve still
// returns only after every goroutine it started ended. At most
// maxIdleWorkers wait per connection; the others end after their stream.
// An idle worker also ends when no stream came for workerIdle, so a
// keep-alive connection that went quiet after a burst holds no stacks.

// maxIdleWorkers bounds the idle workers of one connection, so that a
// connection that once ran many streams at a time keeps few stacks.
const maxIdleWorkers = 16

// workerIdle is how long an idle worker waits for a stream before it ends
// (nanoseconds; a variable for tests).
var workerIdle atomic.Int64

func init() { workerIdle.Store(int64(time.Second)) }

// startStream runs the stream's handler on an idle worker, or on a new one.
func (c *Conn) startStream(st *Stream) {
	select {
	case c.work <- st:
	default:
		c.handlers.Add(1)
		go c.streamWorker(st)
	}
}

// streamWorker runs st, then the streams handed to it while it is idle,
// until the connection ends, enough workers are idle already, or none
// came for workerIdle.
func (c *Conn) streamWorker(st *Stream) {
	defer c.handlers.Done()
	var idle *time.Timer
	for {
		c.runStream(st)
		st = nil // hold nothing of the finished stream while idle
		if c.idleWorkers.Add(1) > maxIdleWorkers {
			c.idleWorkers.Add(-1)
			return
		}
		if d := time.Duration(workerIdle.Load()); idle == nil {
			idle = time.NewTimer(d)
		} else {
			idle.Reset(d)
		}
		select {
		case st = <-c.work:
			c.idleWorkers.Add(-1)
			idle.Stop()
		case <-idle.C:
			c.idleWorkers.Add(-1)
			return
		case <-c.ctx.Done():
			c.idleWorkers.Add(-1)
			idle.Stop()
			return
		}
	}
}
