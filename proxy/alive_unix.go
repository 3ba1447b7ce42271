//go:build unix

package proxy

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// peekAlive reports whether an idle connection is still usable: no data and
// no EOF waiting on the socket. It peeks without blocking, so taking a
// connection from the pool costs one syscall instead of a goroutine per
// idle connection.
func peekAlive(rc syscall.RawConn) bool {
	var p peeker
	p.init(rc)
	return p.alive()
}

// peeker is peekAlive for one connection, peeked at again and again: its
// callback is the peeker itself (a pollCall; a closure per peek would be
// allocations per request, as the pool peeks at every connection it
// hands out, and one bound once an allocation per connection).
type peeker struct {
	rc  syscall.RawConn
	ok  bool
	buf [1]byte
}

func (p *peeker) init(rc syscall.RawConn) { p.rc = rc }

func (p *peeker) call(fd uintptr) bool { return p.peekFD(fd) }

// alive peeks; true without a socket to peek at.
func (p *peeker) alive() bool {
	if p.rc == nil {
		return true
	}
	p.ok = false
	err := readCall(p.rc, p)
	return err == nil && p.ok
}

func (p *peeker) peekFD(fd uintptr) bool {
	n, err := recvPeek(int(fd), p.buf[:])
	// EAGAIN: nothing waiting. An error, EOF (the peer closed) or bytes
	// from an idle upstream all make the connection unusable.
	p.ok = errors.Is(err, unix.EAGAIN) && n <= 0
	return true
}
