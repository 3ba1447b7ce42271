package h2

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

// maxIdleWorkers bounds the idle workers of one connection, so that a
// connection that once ran many streams at a time keeps few stacks.
const maxIdleWorkers = 16

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
// until the connection ends or enough workers are idle already.
func (c *Conn) streamWorker(st *Stream) {
	defer c.handlers.Done()
	for {
		c.runStream(st)
		st = nil // hold nothing of the finished stream while idle
		if c.idleWorkers.Add(1) > maxIdleWorkers {
			c.idleWorkers.Add(-1)
			return
		}
		select {
		case st = <-c.work:
			c.idleWorkers.Add(-1)
		case <-c.ctx.Done():
			c.idleWorkers.Add(-1)
			return
		}
	}
}
