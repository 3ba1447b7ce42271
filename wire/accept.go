package wire

import (
	"errors"
	"syscall"
	"time"
)

// acceptRetryable reports whether an accept error is the process's or the
// system's shortage, or one connection's failure, that passes: out of
// descriptors (EMFILE, ENFILE), of buffers or memory, or a connection
// aborted before it was accepted. The listener is sound: give up on it
// and the cluster port stays shut for good, while the node runs on.
func acceptRetryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// acceptBackoff is the wait before the next accept after a retryable
// failure: 5ms, doubling, at most 1s (as net/http's Server).
func acceptBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	return min(2*d, time.Second)
}
