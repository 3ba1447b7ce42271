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
	alive := true
	var buf [1]byte
	err := rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN):
		case err != nil, n == 0: // error, or EOF: the peer closed
			alive = false
		default: // unexpected bytes from an idle upstream
			alive = false
		}
		return true
	})
	return err == nil && alive
}
