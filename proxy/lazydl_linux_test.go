//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// acceptedPair is an accepted connection (tcpConn) and its client.
func acceptedPair(t *testing.T) (*tcpConn, net.Conn) {
	t.Helper()
	p := connPairs(t)["accepted"]
	return p[0].(*tcpConn), p[1]
}

// armedAt is the deadline lazyDeadline has set on the poller.
func (l *lazyDeadline) armedAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.armed
}

func (l *lazyDeadline) isWaiting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiting
}

// waitData waits until c's socket holds bytes to read, so that a read
// finds them without waiting (loopback may deliver them a little later,
// from a softirq).
func waitData(t *testing.T, c *tcpConn) {
	t.Helper()
	waitFor(t, 10*time.Second, "the peer's data", func() bool {
		n := 0
		c.io.rc.Control(func(fd uintptr) { n, _ = recvPeek(int(fd), make([]byte, 1)) })
		return n > 0
	})
}

func isDeadline(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

// TestLazyDeadlineUnused: a deadline under which nothing waits never
// reaches the poller (no runtime timer), for reads and writes; one that a
// read waits under does, and fails that read when it passes.
func TestLazyDeadlineUnused(t *testing.T) {
	c, peer := acceptedPair(t)
	c.SetDeadline(time.Now().Add(time.Minute))
	peer.Write([]byte("data"))
	waitData(t, c)
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("resp")); err != nil {
		t.Fatal(err)
	}
	if a, w := c.rdl.armedAt(), c.wdl.armedAt(); !a.IsZero() || !w.IsZero() {
		t.Fatalf("deadlines on the poller %v, %v after I/O that never waited; want none", a, w)
	}

	at := time.Now().Add(30 * time.Millisecond)
	c.SetReadDeadline(at)
	if _, err := c.Read(b); !isDeadline(err) {
		t.Fatalf("read waiting past the deadline: %v, want a timeout", err)
	}
	if a := c.rdl.armedAt(); !a.Equal(at) {
		t.Fatalf("armed %v, want %v", a, at)
	}
	// Cleared, it leaves the poller, and the next deadline is lazy again.
	c.SetReadDeadline(time.Time{})
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if a := c.rdl.armedAt(); !a.IsZero() {
		t.Fatalf("armed %v after clearing and setting again, want none", a)
	}
	peer.Write([]byte("more"))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "more" {
		t.Fatalf("read %q, %v", b, err)
	}
}

// TestLazyDeadlinePassedWithData: a read fails once its deadline has
// passed even though data keeps arriving, as with the poller's own
// deadlines: a client that floods a lingering close is not read forever.
// The deadline was never set on the poller (no read waited under it).
func TestLazyDeadlinePassedWithData(t *testing.T) {
	c, peer := acceptedPair(t)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		chunk := make([]byte, 4096)
		for {
			select {
			case <-stop:
				return
			default:
			}
			peer.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := peer.Write(chunk); err != nil && !isDeadline(err) {
				return
			}
		}
	}()
	// Data is there before the deadline is set, and stays there.
	waitData(t, c)
	at := time.Now().Add(20 * time.Millisecond)
	c.SetReadDeadline(at)
	b := make([]byte, 1) // small reads: the socket is never drained
	end := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Read(b)
		if err != nil {
			if !isDeadline(err) {
				t.Fatalf("read: %v, want a timeout", err)
			}
			if time.Now().Before(at) {
				t.Fatalf("timed out before the deadline")
			}
			return
		}
		if time.Now().After(end) {
			t.Fatal("reads went on long past their deadline while data kept coming")
		}
	}
}

// TestLazyDeadlineInterrupts: a deadline set from another goroutine ends a
// read that waits (with no deadline, or a later one), and a past deadline
// fails the next read even with data there: the proxy interrupts reads so.
func TestLazyDeadlineInterrupts(t *testing.T) {
	for _, later := range []bool{false, true} {
		c, peer := acceptedPair(t)
		if later {
			c.SetReadDeadline(time.Now().Add(time.Hour))
		}
		done := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			done <- err
		}()
		waitFor(t, 10*time.Second, "the read to wait", c.rdl.isWaiting)
		c.SetReadDeadline(time.Unix(1, 0))
		select {
		case err := <-done:
			if !isDeadline(err) {
				t.Fatalf("later=%v: interrupted read: %v, want a timeout", later, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("later=%v: a past deadline did not end the waiting read", later)
		}
		if c.rdl.isWaiting() {
			t.Fatal("still waiting after the read returned")
		}

		c.SetReadDeadline(time.Time{})
		peer.Write([]byte("x"))
		waitData(t, c)
		c.SetReadDeadline(time.Unix(1, 0))
		if _, err := c.Read(make([]byte, 1)); !isDeadline(err) {
			t.Fatalf("read after a past deadline, data there: %v, want a timeout", err)
		}
	}
}

// TestLazyDeadlineWrite: a write that waits for room (the client reads
// nothing) fails at its deadline, set on the poller only then.
func TestLazyDeadlineWrite(t *testing.T) {
	c, _ := acceptedPair(t)
	at := time.Now().Add(50 * time.Millisecond)
	c.SetWriteDeadline(at)
	if a := c.wdl.armedAt(); !a.IsZero() {
		t.Fatalf("armed %v before any write, want none", a)
	}
	chunk := make([]byte, 1<<20)
	for i := 0; ; i++ {
		_, err := c.Write(chunk)
		if err != nil {
			if !isDeadline(err) {
				t.Fatalf("write: %v, want a timeout", err)
			}
			break
		}
		if i > 1000 {
			t.Fatal("1000 MiB written to a client that reads nothing")
		}
	}
	if a := c.wdl.armedAt(); !a.Equal(at) {
		t.Fatalf("armed %v, want %v", a, at)
	}
	c.Close()
	if err := c.SetReadDeadline(time.Now().Add(time.Minute)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("deadline on a closed connection: %v, want net.ErrClosed", err)
	}
}

// TestLazyDeadlineRawConn: once the raw connection is handed out (splice
// waits through it), deadlines go to the poller as they are set.
func TestLazyDeadlineRawConn(t *testing.T) {
	c, _ := acceptedPair(t)
	at := time.Now().Add(time.Minute)
	c.SetWriteDeadline(at)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if a := c.wdl.armedAt(); !a.Equal(at) {
		t.Fatalf("write deadline on the poller %v after SyscallConn, want %v", a, at)
	}
	at = time.Now().Add(20 * time.Millisecond)
	c.SetReadDeadline(at)
	if a := c.rdl.armedAt(); !a.Equal(at) {
		t.Fatalf("read deadline on the poller %v, want %v", a, at)
	}
	// A wait through the raw connection ends at it.
	err = rc.Read(func(uintptr) bool { return false })
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("raw wait: %v, want the deadline", err)
	}
}
