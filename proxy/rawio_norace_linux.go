//go:build linux && !race

package proxy

import (
	"syscall"
	"unsafe"
)

// The system calls of sockIO, made without telling the scheduler (see
// sockIO). They are never called with an empty buffer.
//
// A read is recvfrom(2) and a write sendto(2), as nginx's recv and send:
// on a socket read(2) and write(2) go through the file layer first
// (fdget_pos, vfs_read/vfs_write, sock_read_iter/sock_write_iter) before
// the same sock_recvmsg/sock_sendmsg, 1.5 % of a keep-alive request's CPU
// in a profile (bench/CONNPATH.md, "recv and send"). MSG_NOSIGNAL makes a
// write to a connection the peer reset fail with EPIPE without raising
// SIGPIPE, which the runtime would otherwise field and ignore. A gathered
// write stays writev(2), as nginx's.

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func sysWritev(fd uintptr, iov []syscall.Iovec) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}
