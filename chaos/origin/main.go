// Command origin is the chaos suite's origin server: the sample origin of
// deploy/docker (every request answered with "origin HOSTNAME: METHOD URI
// PROTO", /healthz with "ok") plus large cacheable bodies for the cluster
// cache scenario:
//
//	GET /big/NAME?size=BYTES&ms=MILLIS
//
// answers BYTES bytes (default 4 MiB) of a pattern derived from NAME, with
// Content-Length, Cache-Control: max-age=300 and an X-Sha256 header of the
// whole body, streamed in 64 KiB chunks spread over MILLIS milliseconds
// (default 3000), so that a node can be killed while it streams one. The
// client checks every body it gets against X-Sha256 and the length.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// chunk is the write size of a big body.
const chunk = 64 << 10

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
	srv := &http.Server{Handler: handler(name), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("chaos origin %s: listening on %s", name, ln.Addr())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatalf("origin: %v", err)
	}
}

func handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "ok")
		case strings.HasPrefix(r.URL.Path, "/big/"):
			big(w, r)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "origin %s: %s %s %s\n", name, r.Method, r.URL.RequestURI(), r.Proto)
		}
	})
}

// Body returns the big body of name: size bytes of a pattern that differs
// per name and per offset, so that a body spliced from two objects or
// shifted by a chunk does not pass the digest.
func Body(name string, size int) []byte {
	b := make([]byte, size)
	seed := sha256.Sum256([]byte(name))
	for off := 0; off < size; off += 32 {
		h := sha256.Sum256(append(seed[:], byte(off>>24), byte(off>>16), byte(off>>8), byte(off)))
		copy(b[off:], h[:])
	}
	return b
}

func big(w http.ResponseWriter, r *http.Request) {
	size, ms := 4<<20, 3000
	if v, err := strconv.Atoi(r.URL.Query().Get("size")); err == nil && v > 0 && v <= 64<<20 {
		size = v
	}
	if v, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil && v >= 0 && v <= 60000 {
		ms = v
	}
	body := Body(r.URL.Path, size)
	sum := sha256.Sum256(body)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(size))
	h.Set("Cache-Control", "max-age=300")
	h.Set("X-Sha256", hex.EncodeToString(sum[:]))
	w.WriteHeader(http.StatusOK)
	chunks := (size + chunk - 1) / chunk
	pause := time.Duration(ms) * time.Millisecond / time.Duration(max(chunks, 1))
	rc := http.NewResponseController(w)
	for off := 0; off < size; off += chunk {
		if _, err := w.Write(body[off:min(off+chunk, size)]); err != nil {
			return
		}
		rc.Flush()
		select {
		case <-time.After(pause):
		case <-r.Context().Done():
			return
		}
	}
}
