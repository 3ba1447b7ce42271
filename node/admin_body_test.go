package node

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestAdminBodyDeadline: a client that sends a request's body slowly is cut
// off at the body deadline, whether the handler reads the body or not; a
// request whose body was sent whole keeps no deadline, so a handler that
// runs past it is not cancelled and the connection carries the next
// request. Before withBodyDeadline, the slow bodies held their connections
// for as long as the client liked.
func TestAdminBodyDeadline(t *testing.T) {
	const d = 150 * time.Millisecond
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /read", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write([]byte("read"))
	})
	mux.HandleFunc("GET /ignore", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ignored")) })
	mux.HandleFunc("PUT /long", func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusServiceUnavailable)
		case <-time.After(3 * d):
			w.Write([]byte("long"))
		}
	})
	srv := httptest.NewUnstartedServer(withBodyDeadline(mux, d))
	srv.Config.ReadHeaderTimeout = 10 * time.Second
	srv.Start()
	t.Cleanup(srv.Close) // after the clients' connections close (cleanups run last first)

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second)) // a guard: the server must end it long before
		return c, bufio.NewReader(c)
	}
	// closedSoon reads what the server sends until it closes the
	// connection, which it must do well before the guard.
	closedSoon := func(name string, c net.Conn, br *bufio.Reader) string {
		t.Helper()
		start := time.Now()
		b, err := io.ReadAll(br)
		if err != nil {
			t.Fatalf("%s: the connection stayed open: %v after %v", name, err, time.Since(start))
		}
		return string(b)
	}

	for _, path := range []string{"PUT /read", "GET /ignore"} {
		c, br := dial()
		io.WriteString(c, path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nA")
		got := closedSoon(path, c, br)
		if path == "GET /ignore" && !strings.Contains(got, "ignored") {
			t.Fatalf("%s: got %q, want the answer before the close", path, got)
		}
	}

	c, br := dial()
	for i := 0; i < 2; i++ {
		io.WriteString(c, "PUT /long HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nA")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "long" {
			t.Fatalf("request %d: %d %q, want 200 long (a whole body leaves no deadline behind)", i, resp.StatusCode, b)
		}
	}
}
