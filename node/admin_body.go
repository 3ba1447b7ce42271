package node

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

// adminBodyTimeout bounds the time a client of the admin API has to send a
// request's body, counted from when its head was read. The server's
// ReadHeaderTimeout bounds the head; nothing bounded the body: a request
// declaring 1000 bytes and sending one every 15 s held its connection (and
// a goroutine) for as long as the client liked, on a port with no
// connection cap. A ReadTimeout would bound it too, but also cut the
// handlers that run long on purpose (a CPU profile, a trace), as the
// server then cancels their request when its background read times out.
var adminBodyTimeout = 30 * time.Second

// withBodyDeadline sets a read deadline of d on a request that has a body,
// and clears it once the body has been read to its end, so the server's
// wait for the next request (and its watch for a client that leaves) has
// none. A handler that leaves the body unread leaves it to the server,
// which reads the rest under the deadline and closes the connection when
// it passes.
func withBodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err == nil {
			// The server's own body goes back once h returns (before the
			// server writes the answer's head, for a short one): it
			// closes the connection at once when more of the body is
			// unread than it would drain, and drains the rest of any
			// other type of body, which held a request to an endpoint
			// that reads none and declared 99,999,999,999 bytes for the
			// whole deadline.
			orig := r.Body
			r.Body = &deadlineBody{ReadCloser: orig, rc: rc}
			defer func() { r.Body = orig }()
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody clears the connection's read deadline at the body's end.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// bodyLimit refuses, with 413 and a closed connection, a request whose
// head declares a body longer than max (Content-Length), before h reads
// any of it. h still bounds what it reads, for a chunked body. Before it,
// PUT /v1/config declaring 99,999,999,999 bytes and sending none waited
// adminBodyTimeout (30 s) for a body the handler would refuse anyway.
func bodyLimit(max int64, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			w.Header().Set("Connection", "close")
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{
				"error": fmt.Sprintf("body of %d bytes declared: over the limit of %d bytes", r.ContentLength, max)})
			return
		}
		h(w, r)
	}
}
