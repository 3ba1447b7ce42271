package sharedcache

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// headGate is a writer whose first Write (the head) says so and waits
// for open; it counts what comes after.
type headGate struct {
	wrote chan struct{}
	open  chan struct{}
	body  int
	first bool
}

func (w *headGate) Write(p []byte) (int, error) {
	if !w.first {
		w.first = true
		close(w.wrote)
		<-w.open
		return len(p), nil
	}
	w.body += len(p)
	return len(p), nil
}

// TestSendObjectRelayCutFails: an object that streams through uncached
// (a Pipe over its limit) sent to a peer whose reader falls more than
// the relay window behind while the head goes out fails the stream. The
// body then ended whole, the object said complete, and the blocks the
// cut reader got (none) went out as the whole body: the stream ended
// cleanly with nothing in it.
func TestSendObjectRelayCutFails(t *testing.T) {
	h := newHarness(t, Config{}, "a")
	c := h.nodes["a"].c
	p := cache.NewPipe(&cache.Meta{Status: 200, Header: http.Header{"Cache-Control": {"max-age=60"}}}, 1)
	w := &headGate{wrote: make(chan struct{}), open: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- c.sendObject(context.Background(), w, p.Object()) }()
	select {
	case <-w.wrote: // its reader is open at 0
	case <-time.After(10 * time.Second):
		t.Fatal("the head was never written")
	}
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for range 5 << 20 / len(chunk) { // more than the relay window past the reader
		p.Write(chunk)
	}
	p.Close()
	close(w.open)
	select {
	case err := <-done:
		if !errors.Is(err, cache.ErrSlowReader) {
			t.Fatalf("sendObject: %v after %d body bytes of %d; want ErrSlowReader", err, w.body, 5<<20)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sendObject did not return")
	}
}
