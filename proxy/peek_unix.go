//go:build unix && !linux

package proxy

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// recvPeek is recv(fd, b, MSG_PEEK|MSG_DONTWAIT).
func recvPeek(fd int, b []byte) (int, error) {
	n, _, err := unix.Recvfrom(fd, b, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n, err
}

// readCall runs c as rc's Read runs a func.
func readCall(rc syscall.RawConn, c pollCall) error { return readCallFunc(rc, c) }
