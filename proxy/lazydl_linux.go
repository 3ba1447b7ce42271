//go:build linux

package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// lazyDeadline is a read or write deadline of an accepted connection
// (tcpConn) that reaches the runtime's poller only when it can matter: when
// an operation is about to wait, or once it has passed. Setting a deadline
// on the poller adds the connection's timer to the runtime's heap and
// closing the connection takes it off again; most client connections never
// wait under theirs (TCP_DEFER_ACCEPT hands over a socket with its request
// already there, and a small response fits the send buffer), so a new
// connection per request paid for two timers it never used.
//
// The semantics are the poller's: an operation fails with
// os.ErrDeadlineExceeded once the deadline has passed, even with data to
// read or room to write (a client that floods a lingering close is not
// read forever), and a deadline set while an operation waits ends that
// wait. A deadline in the past, the way to interrupt an operation, is
// applied at once.
type lazyDeadline struct {
	p     *pollFD // the socket, which joins the poller for a deadline set there
	write bool    // the write deadline, else the read one

	mu      sync.Mutex
	want    time.Time // the deadline asked for; zero: none
	armed   time.Time // the deadline on the poller
	waiting bool      // an operation waits, or is about to, under armed
	eager   bool      // every deadline goes to the poller at once (see makeEager)
	// due is want as a monoNow reading while want is only recorded
	// (0: nothing pending), for the clock check before each operation.
	due atomic.Int64
}

// set records t; it goes to the poller now if an operation waits, if
// another deadline is there already, or if t has passed.
func (l *lazyDeadline) set(t time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.want = t
	if t.Equal(l.armed) {
		l.due.Store(0)
		return nil
	}
	at := t.Sub(clockBase)
	if l.eager || l.waiting || !l.armed.IsZero() || at <= monoNow() {
		l.due.Store(0)
		return l.applyLocked(t)
	}
	l.due.Store(int64(at))
	return nil
}

// check runs before each operation: a recorded deadline that has passed
// goes to the poller, which then fails the operation. One clock read, and
// only while a deadline is recorded but not set.
func (l *lazyDeadline) check() {
	if d := l.due.Load(); d != 0 && int64(monoNow()) >= d {
		l.mu.Lock()
		l.armLocked()
		l.mu.Unlock()
	}
}

// wait runs in the poller callback before it returns false to wait: the
// deadline goes to the poller first. done must follow when the operation
// returns.
func (l *lazyDeadline) wait() {
	l.mu.Lock()
	l.waiting = true
	l.armLocked() // an error (the socket closed) fails the wait itself
	l.mu.Unlock()
}

// makeEager sets the deadline on the poller now, and every later one as it
// is set: for a connection whose raw socket is waited on by its caller
// (SyscallConn, say to splice), where no callback of ours could set it
// first.
func (l *lazyDeadline) makeEager() {
	l.mu.Lock()
	l.eager = true
	l.armLocked()
	l.mu.Unlock()
}

func (l *lazyDeadline) done() {
	l.mu.Lock()
	l.waiting = false
	l.mu.Unlock()
}

// armLocked sets the recorded deadline on the poller, if it is not there.
func (l *lazyDeadline) armLocked() {
	if !l.want.Equal(l.armed) {
		l.applyLocked(l.want)
	}
	l.due.Store(0)
}

func (l *lazyDeadline) applyLocked(t time.Time) error {
	mode := int('r')
	if l.write {
		mode = 'w'
	}
	if err := l.p.setDeadline(t, mode); err != nil {
		return err
	}
	l.armed = t
	return nil
}
