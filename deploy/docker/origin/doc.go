// Command origin is the sample origin of the compose cluster in
// deploy/docker: every answer names the container that served it, so
// requests through the pingora-node cluster show where they went.
// Standard library only; built static and run from an empty image.
//
//	origin -addr :8080
//
// GET /healthz answers "ok" (the cluster config's health check). Any other
// path answers 200 with "origin HOSTNAME: METHOD URI PROTO". SIGTERM or
// SIGINT stops it within 5 s, letting requests in flight finish.
package main
