package node

import (
	"net/http"
	"strings"
	"time"
)

// adminTimeouts bound how long one connection to the admin API holds a
// slot of maxAdminConns while its client sends or takes nothing. They
// cannot stop a client from taking slots again as they come free (from 8
// addresses, 512 connections renewed every 5 s hold them all); they make
// holding a slot cost the client a connection every few seconds rather
// than one a minute, or none at all.
type adminTimeouts struct {
	// header bounds a request's head, from its first byte (default 5s).
	// A head is a few hundred bytes; the 10 s it had let half of one hold
	// a slot twice as long.
	header time.Duration
	// idle bounds the wait for the next request on a kept-alive
	// connection (default 5s, Apache's KeepAliveTimeout). A minute let
	// one request to /healthz hold a slot for that minute: 9 requests a
	// second held all 512. Prometheus and the CLI reconnect at no cost.
	idle time.Duration
	// write bounds a request's answer, from the start of its handler to
	// the client having taken it (default 1m): longer than the slowest
	// handler (POST /v1/leave, 15 s for raft and 4 s for gossip), and with
	// nothing, a client that asked for /metrics and read none of it held
	// its slot (and a goroutine) for good. The profiles under
	// /debug/pprof/ (admin writes) run as long as they are asked to, and
	// have none.
	write time.Duration
}

func defaultAdminTimeouts() adminTimeouts {
	return adminTimeouts{header: 5 * time.Second, idle: 5 * time.Second, write: time.Minute}
}

// newAdminServer returns the admin API's server for h with the timeouts
// to, and adminBodyTimeout for request bodies.
func newAdminServer(h http.Handler, to adminTimeouts) *http.Server {
	return &http.Server{Handler: withWriteDeadline(withBodyDeadline(h, adminBodyTimeout), to.write),
		ReadHeaderTimeout: to.header, IdleTimeout: to.idle}
}

// withWriteDeadline gives each request's answer d from now to be taken,
// or none for a profile. The server's WriteTimeout would do the first, but
// for the profiles too, and pprof refuses a profile longer than it. Each
// request sets its own, as the connection keeps a deadline set for the
// one before.
func withWriteDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var dl time.Time
		if !strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			dl = time.Now().Add(d)
		}
		http.NewResponseController(w).SetWriteDeadline(dl)
		h.ServeHTTP(w, r)
	})
}
