package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", ":8080", "`host:port` to listen on")
	flag.Parse()
	name, err := os.Hostname()
	if err != nil {
		name = "unknown"
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("origin: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, ln, name); err != nil {
		log.Fatalf("origin: %v", err)
	}
}

// serve answers on ln until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, ln net.Listener, name string) error {
	srv := &http.Server{Handler: handler(name), ReadHeaderTimeout: 10 * time.Second}
	log.Printf("origin %s: listening on %s", name, ln.Addr())
	errc := make(chan error, 1) // Serve's one result
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// handler names the origin in every answer but a big body's.
func handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/big/") {
			big(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.URL.Path == "/healthz" {
			fmt.Fprintln(w, "ok")
			return
		}
		fmt.Fprintf(w, "origin %s: %s %s %s\n", name, r.Method, r.URL.RequestURI(), r.Proto)
	})
}
