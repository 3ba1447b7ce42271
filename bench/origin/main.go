package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "host:port to listen on")
	flag.Parse()
	if err := run(*addr); err != nil {
		log.Fatalf("origin: %v", err)
	}
}

// run serves until SIGTERM or SIGINT, then shuts down within 2 s.
func run(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	var st stats
	srv := &http.Server{
		Handler:   newHandler(&st),
		Protocols: &protocols,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				st.conns.Add(1)
			}
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: 1000, // above any proxy's per-connection stream limit
		},
		ErrorLog: log.New(os.Stderr, "origin: ", 0),
	}
	fmt.Printf("origin: listening on %s (HTTP/1.1 and h2c)\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1) // one send: Serve's result
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// stats counts what the origin has seen since it started.
type stats struct {
	conns    atomic.Int64 // connections accepted
	requests atomic.Int64 // body requests answered (not /_stats)
}

// newHandler returns the fixed-body handler. Bodies are built once; each
// response is one Write with Content-Length set, so HTTP/1.1 answers are
// never chunked.
func newHandler(st *stats) http.Handler {
	bodies := map[string][]byte{
		"/small": bytes.Repeat([]byte("s"), 100),
		"/1k":    bytes.Repeat([]byte("k"), 1<<10),
		"/100k":  bytes.Repeat([]byte("h"), 100<<10),
	}
	lengths := make(map[string]string, len(bodies))
	for p, b := range bodies {
		lengths[p] = strconv.Itoa(len(b))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, cacheable := strings.CutPrefix(r.URL.Path, "/c/")
		path, closing := strings.CutPrefix(path, "/close/")
		if cacheable || closing {
			path = "/" + path
		}
		body, ok := bodies[path]
		if !ok {
			if r.URL.Path == "/_stats" {
				fmt.Fprintf(w, "conns %d\nrequests %d\n", st.conns.Load(), st.requests.Load())
				return
			}
			http.NotFound(w, r)
			return
		}
		st.requests.Add(1)
		h := w.Header()
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Content-Length"] = []string{lengths[path]}
		if cacheable {
			h["Cache-Control"] = []string{"max-age=3600"}
		}
		if closing { // a new upstream connection for every request
			h["Connection"] = []string{"close"}
		}
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}
