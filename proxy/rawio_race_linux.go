//go:build linux && race

package proxy

import (
	"errors"
	"syscall"
	"unsafe"
)

// Under the race detector sockIO goes through the syscall package's read
// and write: they tell the detector that a write to a socket happens
// before the read of its bytes (and which memory each touches), which
// tests that hand data over a connection depend on; a raw system call
// tells it nothing. A gathered write becomes a write of its first buffer,
// a partial writev as far as sockIO is concerned.

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	if err != nil {
		return 0, errnoOf(err)
	}
	return n, 0
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	if err != nil {
		return 0, errnoOf(err)
	}
	return n, 0
}

func sysWritev(fd uintptr, iov []syscall.Iovec) (int, syscall.Errno) {
	return sysWrite(fd, unsafe.Slice(iov[0].Base, iov[0].Len))
}
