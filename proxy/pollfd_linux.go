//go:build linux

package proxy

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// pollFD is the socket of a connection that joins the runtime's poller
// only when an operation on it has to wait, or a deadline has to be
// armed: then it becomes an *os.File, which costs fcntl(2) to read its
// flags, epoll_ctl(ADD) and, at close, epoll_ctl(DEL), and allocates the
// file, its poll descriptor and a finalizer. An accepted client socket
// often never waits: TCP_DEFER_ACCEPT hands it over with its request
// already there, and a small response fits the send buffer, so a client
// that sends one request and closes (Connection: close) costs accept4,
// recvfrom, sendto and close, as nginx's does, which registers only what
// its event loop must wait for. Three of the ten system calls of such a
// connection, besides the allocations (bench/CONNPATH.md, "Sockets that
// join the poller when they wait").
//
// It is a syscall.RawConn: Read and Write call their callback on the bare
// descriptor while it has not joined, and join it when the callback asks
// to wait (returns false), then go on through the file's raw connection,
// whose poller calls the callback again before it waits. The poller
// forgets readiness from before a wait began, and epoll_ctl(ADD) reports
// a socket already readable or writable at once, so nothing that came
// in between is lost.
type pollFD struct {
	fd int

	// mu is held shared by every operation on the bare descriptor and
	// exclusively by close, so that the descriptor is never closed, and
	// its number given to another socket, under such an operation.
	mu sync.RWMutex
	// regMu orders joining and closing; closed is set under it.
	regMu  sync.Mutex
	closed atomic.Bool
	j      atomic.Pointer[polled] // set once, when the socket joins the poller
	joins  *atomic.Int64          // if set, counts the join (the listener's, for tests)
}

// polled is the file a pollFD's socket became when it joined the poller.
type polled struct {
	f  *os.File
	rc syscall.RawConn
}

// initJoined makes f, in the poller already, p's file (a dialled
// connection: it waits for its answer from the start).
func (p *pollFD) initJoined(f *os.File) {
	rc, _ := f.SyscallConn() // never fails for a file os.NewFile made
	p.j.Store(&polled{f: f, rc: rc})
}

// join puts the socket into the runtime's poller, once.
func (p *pollFD) join() (*polled, error) {
	if j := p.j.Load(); j != nil {
		return j, nil
	}
	p.regMu.Lock()
	defer p.regMu.Unlock()
	if j := p.j.Load(); j != nil {
		return j, nil
	}
	if p.closed.Load() {
		return nil, os.ErrClosed
	}
	f := os.NewFile(uintptr(p.fd), "tcp") // pollable: the socket is non-blocking
	rc, err := f.SyscallConn()
	if err != nil { // not for a file os.NewFile made
		return nil, err
	}
	j := &polled{f: f, rc: rc}
	p.j.Store(j)
	if p.joins != nil {
		p.joins.Add(1)
	}
	return j, nil
}

// joined reports whether the socket is in the poller (tests).
func (p *pollFD) joined() bool { return p.j.Load() != nil }

// file is the socket's *os.File, joining the poller for it.
func (p *pollFD) file() (*os.File, error) {
	j, err := p.join()
	if err != nil {
		return nil, err
	}
	return j.f, nil
}

func (p *pollFD) Read(fn func(uintptr) bool) error  { return p.op(fn, false) }
func (p *pollFD) Write(fn func(uintptr) bool) error { return p.op(fn, true) }

// op runs fn as syscall.RawConn's Read (write false) or Write would.
func (p *pollFD) op(fn func(uintptr) bool, write bool) error {
	if j := p.j.Load(); j == nil {
		p.mu.RLock()
		if p.closed.Load() {
			p.mu.RUnlock()
			return os.ErrClosed
		}
		if p.j.Load() == nil {
			done := fn(uintptr(p.fd))
			p.mu.RUnlock()
			if done {
				return nil
			}
		} else {
			p.mu.RUnlock()
		}
	}
	j, err := p.join()
	if err != nil {
		return err
	}
	if write {
		return j.rc.Write(fn)
	}
	return j.rc.Read(fn)
}

// Control calls fn with the descriptor, which stays open meanwhile.
func (p *pollFD) Control(fn func(uintptr)) error {
	if j := p.j.Load(); j != nil {
		return j.rc.Control(fn)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return os.ErrClosed
	}
	if j := p.j.Load(); j != nil {
		return j.rc.Control(fn)
	}
	fn(uintptr(p.fd))
	return nil
}

// close closes the socket: through its file once it joined the poller
// (which ends the operations waiting there), else with a plain close(2)
// once no operation is on the descriptor. A second close fails with
// os.ErrClosed.
func (p *pollFD) close() error {
	p.regMu.Lock()
	if p.closed.Load() {
		p.regMu.Unlock()
		return os.ErrClosed
	}
	p.closed.Store(true)
	p.regMu.Unlock()
	// No operation on the bare descriptor runs past this, and none
	// starts: they check closed under mu.
	p.mu.Lock()
	defer p.mu.Unlock()
	if j := p.j.Load(); j != nil {
		return j.f.Close()
	}
	// A raw call, as sockIO's: closing a socket does not block (no
	// SO_LINGER), and the scheduler need not hear of it.
	if _, _, e := syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(p.fd), 0, 0); e != 0 {
		return os.NewSyscallError("close", e)
	}
	return nil
}
