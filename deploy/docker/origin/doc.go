// Command origin is the sample origin of the compose cluster in
// deploy/docker: every answer names the container that served it, so
// requests through the pingora-node cluster show where they went.
// Standard library only; built static and run from an empty image.
//
//	origin -addr :8080
//
// GET /healthz answers "ok" (the cluster config's health check). Any other
// path answers 200 with "origin HOSTNAME: METHOD URI PROTO", except
//
//	GET /big/NAME?size=BYTES&ms=MILLIS
//
// which answers BYTES bytes (default 4 MiB, at most 64 MiB) of a pattern
// derived from NAME, with Content-Length, Cache-Control: max-age=300 and
// an X-Sha256 header of the whole body, streamed in 64 KiB chunks spread
// over MILLIS milliseconds (default 3000): the chaos suite's cluster-cache
// scenario kills a node while one streams and checks every body it gets
// against the digest and the length. SIGTERM or SIGINT stops it within
// 5 s, letting requests in flight finish.
package main
