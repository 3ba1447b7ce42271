//go:build linux

package proxy

import (
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// A response body relayed from an HTTP/1.1 upstream to an HTTP/1.1 client,
// both over plain TCP, is moved by splice(2) through a pipe: the kernel
// hands the upstream socket's pages to the client socket, and the bytes
// never cross into the process (two copies of every byte fewer; HAProxy's
// "option splice-response" does the same). Go's own TCPConn.ReadFrom would
// splice too, but it reports one error for both sides; this loop knows
// which socket failed, so a client that left is told from an upstream that
// broke, as on the copy path, and it refreshes each side's idle deadline
// before every splice, as the copy path does before every read and write.

// splicePipeSize is what a pipe is asked to hold (F_SETPIPE_SZ): a 100 KiB
// body then moves in one splice each way when the upstream sent it at once.
const splicePipeSize = 128 << 10

// maxSplicePipes bounds the pipes in use at once, and with them the kernel
// memory that bodies waiting for slow clients may hold in pipes (128 MiB);
// past it bodies are copied, as HAProxy's maxpipes does.
const maxSplicePipes = 1024

// splicePipesInUse counts the pipes taken from the pool and not yet
// returned or closed.
var splicePipesInUse atomic.Int64

// splicePipe is a pipe kept for splicing. It is pooled only when empty.
type splicePipe struct {
	r, w int
	size int // its capacity
}

var splicePipes = sync.Pool{New: func() any {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil
	}
	p := &splicePipe{r: fds[0], w: fds[1], size: 64 << 10}
	// Past the user's pipe-user-pages-soft the kernel refuses the size
	// (and makes new pipes smaller): splices then move less at a time.
	n, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, splicePipeSize)
	if err != nil {
		n, err = unix.FcntlInt(uintptr(p.w), unix.F_GETPIPE_SZ, 0)
	}
	if err == nil && n > 0 {
		p.size = n
	}
	// A pipe dropped by the pool is closed by its finalizer.
	runtime.SetFinalizer(p, (*splicePipe).close)
	return p
}}

func (p *splicePipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// spliceBody moves n bytes from src to dst. before is called before each
// splice on a side, and so before any wait on it (to refresh that side's
// idle deadline). It returns how many bytes reached dst and, on failure,
// which side failed: the source ending early is io.ErrUnexpectedEOF from
// spliceSrc. handled false means no pipe could be had (maxSplicePipes in
// use, or pipe2 failed) and nothing was moved: the caller copies. sm,
// when not nil, holds the splices to the client to the minimum send rate
// as sockIO's writes are (a splice that waits for room is bounded by the
// budget, and fails with errSlowSend when it runs out).
func spliceBody(dst, src syscall.RawConn, n int64, sm *sendMeter, before func(spliceSide)) (written int64, handled bool, fail *spliceErr) {
	if splicePipesInUse.Add(1) > maxSplicePipes {
		splicePipesInUse.Add(-1)
		return 0, false, nil
	}
	p, _ := splicePipes.Get().(*splicePipe)
	if p == nil {
		splicePipesInUse.Add(-1)
		return 0, false, nil
	}
	inPipe := 0
	defer func() {
		splicePipesInUse.Add(-1)
		if inPipe == 0 {
			splicePipes.Put(p)
			return
		}
		// Bytes left in the pipe belong to a failed relay: the pipe
		// cannot be reused.
		runtime.SetFinalizer(p, nil)
		p.close()
	}()
	var read int64
	for written < n {
		if inPipe == 0 {
			before(spliceSrc)
			var m int64
			var serr error
			err := src.Read(func(fd uintptr) bool {
				for {
					m, serr = unix.Splice(int(fd), nil, p.w, nil, int(min(n-read, int64(p.size))), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
					if serr != unix.EINTR {
						return serr != unix.EAGAIN // EAGAIN: wait until readable
					}
				}
			})
			switch {
			case err != nil:
				return written, true, &spliceErr{spliceSrc, err}
			case serr != nil:
				return written, true, &spliceErr{spliceSrc, serr}
			case m == 0:
				return written, true, &spliceErr{spliceSrc, io.ErrUnexpectedEOF}
			}
			inPipe += int(m)
			read += m
		}
		before(spliceDst)
		var m int64
		var derr error
		err := dst.Write(func(fd uintptr) bool {
			if sm != nil && sm.spliceWait { // room after a wait
				sm.spliceWait = false
				if sm.endWait() {
					derr = errSlowSend
					return true
				}
			}
			for {
				m, derr = unix.Splice(p.r, nil, int(fd), nil, inPipe, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				switch {
				case derr == unix.EINTR:
					continue
				case derr == unix.EAGAIN: // wait until writable
					if sm != nil && sm.on {
						if sm.beginWait(sendQueued(fd)) {
							resetOnClose(fd)
							derr = errSlowSend
							return true
						}
						sm.spliceWait = true
					}
					return false
				case derr == nil && sm != nil:
					sm.sent += m
				}
				return true
			}
		})
		if sm != nil && sm.spliceWait { // the poller failed the wait
			sm.spliceWait = false
			if sm.endWait() {
				err = errSlowSend
			}
		}
		if err == nil {
			err = derr
		}
		if err == nil && m == 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			return written, true, &spliceErr{spliceDst, err}
		}
		inPipe -= int(m)
		written += m
	}
	return written, true, nil
}
