//go:build linux

package proxy

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// pollFD is a connection's non-blocking socket, which joins the runtime's
// poller (rtpoll_linux.go) only when an operation on it first has to wait,
// or a deadline has to be armed: epoll_ctl(ADD) then, and epoll_ctl(DEL)
// at close. An accepted client socket often never waits: TCP_DEFER_ACCEPT
// hands it over with its request already there, and a small response fits
// the send buffer, so a client that sends one request and closes
// (Connection: close) costs accept4, recvfrom, sendto and close, as
// nginx's does, which registers only what its event loop must wait for
// (bench/CONNPATH.md, "Sockets that join the poller when they wait").
//
// It is a syscall.RawConn: Read and Write call their callback on the
// descriptor, and when it asks to wait (returns false) wait in the poller
// for the socket to become readable or writable and call it again. Unlike
// an *os.File's raw connection it does not have to ask the socket before
// it waits: waitRead waits first (see sockIO.read), because the poller's
// record of readiness that came while nobody waited is cleared only by
// an operation that asks the socket first (Read, Write: their
// runtime_pollReset, as the file's), never by a wait; the exception is an
// end of stream that came with the last bytes read (sockIO.waitFirstNext).
// epoll_ctl(ADD) reports a socket already readable or writable at once,
// so joining late loses nothing either.
//
// Closing is the file's: Close marks the descriptor closed, ends the
// waits on it, and the last operation to leave closes it, so that its
// number is never given to another socket under an operation.
type pollFD struct {
	fd int

	// state counts the operations on the descriptor (and one for being
	// open), with pfdClosed set by Close; the count reaching zero closes
	// the descriptor.
	state atomic.Uint64
	// regMu orders joining, setting a deadline and closing; pd is
	// written under it.
	regMu sync.Mutex
	pd    atomic.Uintptr // the runtime's poll descriptor once joined, else 0
	// drained: the last read found the socket's receive queue empty (a
	// short read: sockIO's callback sets it; every read clears it
	// first), so the next read may wait first (waitRead)
	drained atomic.Bool
	joins   *atomic.Int64 // if set, counts the join (the listener's, for tests)
}

const pfdClosed = 1 << 63

// init makes p the owner of fd, open.
func (p *pollFD) init(fd int) {
	p.fd = fd
	p.state.Store(1)
}

// incref adds an operation; false once p is closed.
func (p *pollFD) incref() bool {
	for {
		s := p.state.Load()
		if s&pfdClosed != 0 {
			return false
		}
		if p.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// decref ends an operation (or, from close, the open state); the last
// one closes the descriptor.
func (p *pollFD) decref() {
	if p.state.Add(^uint64(0)) == pfdClosed {
		p.destroy()
	}
}

// destroy closes the descriptor, once nothing uses it.
func (p *pollFD) destroy() {
	if pd := p.pd.Load(); pd != 0 {
		runtime_pollClose(pd) // epoll_ctl(DEL), and the descriptor back to the runtime's cache
	}
	// A raw call, as sockIO's: closing a socket does not block (no
	// SO_LINGER, or SO_LINGER 0), and the scheduler need not hear of it.
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(p.fd), 0, 0)
}

// joinLocked puts the socket into the runtime's poller, once; p.regMu is
// held.
func (p *pollFD) joinLocked() (uintptr, error) {
	if pd := p.pd.Load(); pd != 0 {
		return pd, nil
	}
	if p.state.Load()&pfdClosed != 0 {
		return 0, os.ErrClosed
	}
	pollServerInit()
	pd, errno := runtime_pollOpen(uintptr(p.fd))
	if errno != 0 {
		return 0, os.NewSyscallError("epoll_ctl", syscall.Errno(errno))
	}
	p.pd.Store(pd)
	if p.joins != nil {
		p.joins.Add(1)
	}
	return pd, nil
}

func (p *pollFD) join() (uintptr, error) {
	if pd := p.pd.Load(); pd != 0 {
		return pd, nil
	}
	p.regMu.Lock()
	defer p.regMu.Unlock()
	return p.joinLocked()
}

// joined reports whether the socket is in the poller.
func (p *pollFD) joined() bool { return p.pd.Load() != 0 }

func (p *pollFD) Read(fn func(uintptr) bool) error  { return p.op(funcCall(fn), 'r', true) }
func (p *pollFD) Write(fn func(uintptr) bool) error { return p.op(funcCall(fn), 'w', true) }

// readCall runs c as Read runs a func; rc is usually a pollFD (an accepted
// or dialled connection's), which takes c without a closure.
func readCall(rc syscall.RawConn, c pollCall) error {
	if p, ok := rc.(*pollFD); ok {
		return p.op(c, 'r', true)
	}
	return readCallFunc(rc, c)
}

// waitRead is Read for a reader that knows the socket held nothing when
// it last read (a short read), and has not asked it since: it waits for
// readiness before the first call of fn, whose first call must then read.
// Readiness that came since that read is on record (nothing reset it), so
// the wait ends at once when bytes are there already. The socket must
// have joined the poller.
func (p *pollFD) waitRead(c pollCall) error { return p.op(c, 'r', false) }

// op runs fn as syscall.RawConn's Read (mode 'r') or Write ('w') would;
// ask false: wait before the first call.
func (p *pollFD) op(fn pollCall, mode int, ask bool) error {
	if !p.incref() {
		return os.ErrClosed
	}
	defer p.decref()
	if mode == 'r' {
		p.drained.Store(false) // until fn finds out again
	}
	pd := p.pd.Load()
	if ask {
		if pd != 0 {
			// As the file's: what came before is about to be read, and
			// a deadline that passed fails the operation.
			if code := runtime_pollReset(pd, mode); code != pollNoError {
				return pollErr(code)
			}
		}
		if fn.call(uintptr(p.fd)) {
			return nil
		}
	}
	for {
		if pd == 0 {
			var err error
			if pd, err = p.join(); err != nil {
				return err
			}
		}
		if code := runtime_pollWait(pd, mode); code != pollNoError {
			return pollErr(code)
		}
		if fn.call(uintptr(p.fd)) {
			return nil
		}
	}
}

// Control calls fn with the descriptor, which stays open meanwhile.
func (p *pollFD) Control(fn func(uintptr)) error {
	if !p.incref() {
		return os.ErrClosed
	}
	defer p.decref()
	fn(uintptr(p.fd))
	return nil
}

// setDeadline sets the read ('r') or write ('w') deadline on the poller,
// joining it: a deadline that passes ends a wait, and fails the next
// operation that asks the socket first.
//
// It counts as an operation, as internal/poll's SetDeadline does: once
// the socket is closed it fails with os.ErrClosed, and the socket cannot
// be destroyed while it runs. Closing hands the poll descriptor back to
// the runtime, which gives it to the next socket that joins; a deadline
// set through a closed connection landed there, on another connection.
func (p *pollFD) setDeadline(t time.Time, mode int) error {
	if !p.incref() {
		return os.ErrClosed
	}
	defer p.decref()
	p.regMu.Lock()
	defer p.regMu.Unlock()
	pd, err := p.joinLocked()
	if err != nil {
		return err
	}
	runtime_pollSetDeadline(pd, pollDeadline(t), mode)
	return nil
}

// close closes the socket: at once when nothing uses it, else when the
// last operation leaves, which the close wakes from any wait. A second
// close fails with os.ErrClosed.
func (p *pollFD) close() error {
	p.regMu.Lock()
	for {
		s := p.state.Load()
		if s&pfdClosed != 0 {
			p.regMu.Unlock()
			return os.ErrClosed
		}
		if p.state.CompareAndSwap(s, s|pfdClosed) {
			break
		}
	}
	if pd := p.pd.Load(); pd != 0 {
		runtime_pollUnblock(pd) // ends the waits, and fails every later one
	}
	p.regMu.Unlock()
	p.decref() // the open state's
	return nil
}
