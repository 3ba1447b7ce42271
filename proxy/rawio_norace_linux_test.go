//go:build linux && !race

package proxy

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// TestSockIONoSIGPIPE: writing to a connection whose peer has gone fails
// with an error and raises no SIGPIPE (sockIO writes with MSG_NOSIGNAL).
// Under the race detector writes go through syscall.Write, which raises
// it (the runtime ignores it there), hence the build tag.
func TestSockIONoSIGPIPE(t *testing.T) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGPIPE, syscall.SIGALRM)
	defer signal.Stop(sigs)
	for name, p := range connPairs(t) {
		c, peer := p[0], p[1]
		setLinger0(t, peer)
		peer.Close() // an RST: a write fails with ECONNRESET, the ones after it with EPIPE
		var err error
		fails := 0
		for i := 0; i < 100 && fails < 3; i++ {
			if _, err = c.Write([]byte("after the peer went")); err != nil {
				fails++
			}
		}
		if !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("%s: the third failed write to a reset connection: %v, want EPIPE", name, err)
		}
		// SIGALRM marks the end: the runtime hands pending signals over
		// lowest number first, so a SIGPIPE (13) raised by the writes
		// comes before the marker (14).
		syscall.Kill(os.Getpid(), syscall.SIGALRM)
		deadline := time.After(10 * time.Second)
	wait:
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGPIPE {
					t.Fatalf("%s: a write to a reset connection raised SIGPIPE (%v)", name, err)
				}
				break wait
			case <-deadline:
				t.Fatal("the marker signal never came")
			}
		}
	}
}
