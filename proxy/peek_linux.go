//go:build linux

package proxy

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvPeek is recv(fd, b, MSG_PEEK|MSG_DONTWAIT) as a raw system call:
// unix.Recvfrom would allocate for the source address it returns.
func recvPeek(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
