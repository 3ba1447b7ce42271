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

// TestAdminDeclaredBodyOverLimit: a PUT /v1/config or a purge whose head
// declares a body over the endpoint's limit is answered 413 (the admin
// API's JSON error) at once and its connection closed, with no body sent.
// Before bodyLimit, the handler waited adminBodyTimeout for the body.
func TestAdminDeclaredBodyOverLimit(t *testing.T) {
	old := adminBodyTimeout
	adminBodyTimeout = time.Hour // the test's own guard must fire first if the server waits
	t.Cleanup(func() { adminBodyTimeout = old })
	n := startNode(t, writeFiles(t, clusterFor(origin(t, "a"))))
	for _, req := range []string{"PUT /v1/config", "POST /v1/cache/purge"} {
		c, err := net.Dial("tcp", n.AdminAddr())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req+" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			c.Close()
			t.Fatalf("%s: no answer before the body: %v", req, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(errorOf(string(b)), "over the limit of 1048576 bytes") ||
			resp.Header.Get("Content-Type") != "application/json" || !resp.Close {
			t.Errorf("%s: %d %v %s, want 413 with a JSON error and Connection: close", req, resp.StatusCode, resp.Header, b)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%s: connection not closed after the 413: %v", req, err)
		}
		c.Close()
	}
}

// TestAdminDeclaredBodyNotRead: an endpoint that reads no body, given a
// request declaring a huge one and sending none, answers at once and
// closes the connection. Before withBodyDeadline gave the server its own
// body back, the server drained the wrapped body and the answer waited
// for adminBodyTimeout.
func TestAdminDeclaredBodyNotRead(t *testing.T) {
	old := adminBodyTimeout
	adminBodyTimeout = time.Hour
	t.Cleanup(func() { adminBodyTimeout = old })
	n := startNode(t, writeFiles(t, clusterFor(origin(t, "a"))))
	for _, req := range []string{"POST /v1/upstreams/nope/peers/127.0.0.1:1/disable", "POST /v1/force-leave/nobody"} {
		c, err := net.Dial("tcp", n.AdminAddr())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req+" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			c.Close()
			t.Fatalf("%s: no answer before the body: %v", req, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusNotFound || !resp.Close {
			t.Errorf("%s: %d %v %s, want 404 and Connection: close", req, resp.StatusCode, resp.Header, b)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%s: connection not closed after the answer: %v", req, err)
		}
		c.Close()
	}
}
