package h2

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestStreamWorkerReused: a stream that starts while a worker of its
// connection is idle runs on that worker's goroutine, and the workers end
// with their connection.
func TestStreamWorkerReused(t *testing.T) {
	setWorkerIdle(t, time.Hour) // the idle worker must still wait for the second stream
	ids := make(chan string, 2)
	s := serve(t, Config{}, func(st *Stream) {
		ids <- goroutineID()
		st.WriteHead(204, nil)
		st.Finish(nil)
	})
	c := client()
	get := func() { get204(t, c, s.addr) }
	get()
	s.mu.Lock()
	conn := s.conns[0]
	s.mu.Unlock()
	poll(t, "an idle worker", func() bool { return conn.idleWorkers.Load() == 1 })
	get()
	if first, second := <-ids, <-ids; first != second {
		t.Fatalf("the second stream ran on goroutine %s, the idle worker is %s", second, first)
	}
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
	conn.nc.Close()
	ended := make(chan struct{})
	go func() {
		conn.handlers.Wait() // what Serve waits for: every worker's end
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(10 * time.Second): // a guard against a hang, not a measure
		t.Fatal("the connection's workers did not end")
	}
}

// TestIdleWorkerEnds: a worker that gets no stream for workerIdle ends,
// so a connection that went quiet holds no worker; the next stream runs
// on a new one.
func TestIdleWorkerEnds(t *testing.T) {
	setWorkerIdle(t, time.Millisecond)
	s := serve(t, Config{}, func(st *Stream) {
		st.WriteHead(204, nil)
		st.Finish(nil)
	})
	c := client()
	get := func() { get204(t, c, s.addr) }
	get()
	s.mu.Lock()
	conn := s.conns[0]
	s.mu.Unlock()
	ended := make(chan struct{})
	go func() {
		conn.handlers.Wait() // every worker ended, the connection still open
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(10 * time.Second): // a guard against a hang, not a measure
		t.Fatal("the idle worker did not end")
	}
	if n := conn.idleWorkers.Load(); n != 0 {
		t.Fatalf("%d idle workers counted, want 0", n)
	}
	get() // on a new worker
}

// get204 makes one request and checks that it got 204.
func get204(t *testing.T, c *http.Client, addr string) {
	t.Helper()
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("status %d, want 204", resp.StatusCode)
	}
}

func setWorkerIdle(t *testing.T, d time.Duration) {
	old := workerIdle.Swap(int64(d))
	t.Cleanup(func() { workerIdle.Store(old) })
}

// goroutineID returns the calling goroutine's number, from its stack
// trace's first line ("goroutine 42 [running]:").
func goroutineID() string {
	buf := make([]byte, 64)
	f := strings.Fields(string(buf[:runtime.Stack(buf, false)]))
	return f[1]
}

// poll waits for cond, failing the test after a generous deadline (a
// guard against a hang, not a measure).
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
