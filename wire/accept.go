package wire

import (
	"errors"
	"syscall"
	"time"
)

// AcceptRetryable reports whether an accept error is the process's or the
// system's shortage, or one connection's failure, that passes: out of
// descriptors (EMFILE, ENFILE), of buffers or memory, or a connection
// aborted before it was accepted. The listener is sound: an accept loop
// that gave up on it would leave its port shut for good while the node
// runs on (the cluster port's; the node's admin API uses it too).
func AcceptRetryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// AcceptBackoff is the wait before the next accept after a retryable
// failure: 5ms, doubling, at most 1s (as net/http's Server).
func AcceptBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	return min(2*d, time.Second)
}
