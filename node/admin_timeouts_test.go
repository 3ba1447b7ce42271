package node

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestAdminTimeoutsFreeSlots: a connection whose client sends or takes
// nothing gives its slot of the admin API back within the server's
// timeouts: half a head, a kept-alive connection after its answer, and
// an answer the client does not read. Before the write deadline, a client
// that asked for a large answer (/metrics) and read none of it held its
// slot and a goroutine for good; a profile under /debug/pprof/ still runs
// past it.
func TestAdminTimeoutsFreeSlots(t *testing.T) {
	const d = 150 * time.Millisecond
	handlerDone := make(chan error, 1) // one /big request
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * d):
			w.Write([]byte("slow"))
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("GET /slow", slow)
	mux.HandleFunc("GET /debug/pprof/slow", slow)
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		var err error
		for i := 0; i < 16<<10 && err == nil; i++ { // at most 1 GiB
			_, err = w.Write(chunk)
		}
		handlerDone <- err
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	capped := newCapListener(ln, 8, 8, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := newAdminServer(mux, adminTimeouts{header: d, idle: d, write: d})
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(capped) }()
	t.Cleanup(func() { srv.Close(); <-served })
	open := func() int {
		capped.mu.Lock()
		defer capped.mu.Unlock()
		return capped.open
	}
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second)) // a guard: the server must end it long before
		waitUntil(t, "the connection to take a slot", func() bool { return open() == 1 })
		return c, bufio.NewReader(c)
	}
	// freed waits for the server to close c and give its slot back.
	freed := func(what string, c net.Conn, br *bufio.Reader) {
		t.Helper()
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Fatalf("%s: the server did not close the connection: %v", what, err)
		}
		waitUntil(t, what+" to give its slot back", func() bool { return open() == 0 })
	}
	get := func(c net.Conn, br *bufio.Reader, path string) (string, error) {
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	c, br := dial()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n") // half a head
	freed("half a head", c, br)

	c, br = dial()
	if body, err := get(c, br, "/healthz"); body != "ok" {
		t.Fatalf("/healthz: %q, %v", body, err)
	}
	freed("an idle connection", c, br)

	c, br = dial()
	if body, err := get(c, br, "/debug/pprof/slow"); body != "slow" {
		t.Fatalf("a profile running past the write deadline was cut: %q, %v", body, err)
	}
	if body, err := get(c, br, "/slow"); err == nil {
		t.Fatalf("an answer past the write deadline was sent: %q (the profile's lack of one was kept?)", body)
	}
	freed("an answer past the write deadline", c, br)

	c, _ = dial()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") // and read none of it
	select {
	case err := <-handlerDone:
		if err == nil {
			t.Fatal("the server wrote 1 GiB to a client that read none of it")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the answer to a client that reads none of it is still being written")
	}
	waitUntil(t, "an unread answer to give its slot back", func() bool { return open() == 0 })
}
