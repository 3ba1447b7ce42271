package proxy

import "syscall"

// vecWriter is a connection that writes several buffers in one call
// (writev(2)); see sockIO.
type vecWriter interface {
	writev(bufs [][]byte) (int64, error)
}

// writeHolder is a connection whose next write can wait for its next read
// and go out from inside it (sockIO.holdNextWrite).
type writeHolder interface {
	holdNextWrite()
}

// pollCall is a raw connection's callback (syscall.RawConn's Read and
// Write take a func) as an interface: the pointer to a connection's
// long-lived struct is one without an allocation, where a method value
// bound to it (s.rawRead) is a closure allocated for every connection.
// pollFD runs them as they are (readCall).
type pollCall interface {
	call(fd uintptr) bool
}

// funcCall is a func as a pollCall (a func value converts to an interface
// without allocating).
type funcCall func(uintptr) bool

func (f funcCall) call(fd uintptr) bool { return f(fd) }

// readCallFunc is readCall for a raw connection of any kind: c's method
// value, allocated, as its Read takes a func.
func readCallFunc(rc syscall.RawConn, c pollCall) error { return rc.Read(c.call) }
