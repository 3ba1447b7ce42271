//go:build linux

package proxy

import (
	"errors"
	"os"
	"sync"
	"time"
	_ "unsafe" // go:linkname
)

// The runtime's network poller, used directly (pollFD) rather than
// through an *os.File: the file's raw connection resets a descriptor's
// readiness at the start of every operation (runtime_pollReset), so a
// read cannot wait without first asking the socket and learning EAGAIN,
// and making the file costs fcntl(2), an allocation and a finalizer. These
// are the functions internal/poll calls; the runtime exports them to it by
// name (go:linkname on their definitions), which is what makes a
// reference from outside the standard library link. Their signatures have
// not changed since the poller took its current form (Go 1.2-1.9); a
// change would fail the build here, not at run time.

//go:linkname runtime_pollServerInit internal/poll.runtime_pollServerInit
func runtime_pollServerInit()

//go:linkname runtime_pollOpen internal/poll.runtime_pollOpen
func runtime_pollOpen(fd uintptr) (uintptr, int)

//go:linkname runtime_pollClose internal/poll.runtime_pollClose
func runtime_pollClose(ctx uintptr)

//go:linkname runtime_pollWait internal/poll.runtime_pollWait
func runtime_pollWait(ctx uintptr, mode int) int

//go:linkname runtime_pollReset internal/poll.runtime_pollReset
func runtime_pollReset(ctx uintptr, mode int) int

//go:linkname runtime_pollSetDeadline internal/poll.runtime_pollSetDeadline
func runtime_pollSetDeadline(ctx uintptr, d int64, mode int)

//go:linkname runtime_pollUnblock internal/poll.runtime_pollUnblock
func runtime_pollUnblock(ctx uintptr)

// pollServerInit starts the poller (epoll) once; the net package has
// usually done so already.
var pollServerInit = sync.OnceFunc(runtime_pollServerInit)

// The poller's answers (runtime/netpoll.go).
const (
	pollNoError        = 0
	pollErrClosing     = 1
	pollErrTimeout     = 2
	pollErrNotPollable = 3
)

// errNotPollable: the poller saw an error event on the descriptor; the
// next system call on it reports the error itself.
var errNotPollable = errors.New("proxy: error event on socket")

// pollErr is the error of a poller answer, as internal/poll's.
func pollErr(code int) error {
	switch code {
	case pollNoError:
		return nil
	case pollErrClosing:
		return os.ErrClosed
	case pollErrTimeout:
		return os.ErrDeadlineExceeded
	}
	return errNotPollable
}

// pollDeadline is t as the poller takes it: nanoseconds from now, 0 for
// none, negative once passed.
func pollDeadline(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	d := int64(time.Until(t))
	if d == 0 {
		d = -1 // now, not "none"
	}
	return d
}
