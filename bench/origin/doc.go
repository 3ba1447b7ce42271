// Command origin is the HTTP origin of bench/run.sh: it serves fixed bodies
// from memory, with Content-Length, over HTTP/1.1 keep-alive and HTTP/2
// cleartext with prior knowledge (h2c) on the same port. Standard library
// only (Go 1.24+ http.Server.Protocols).
//
//	origin -addr 127.0.0.1:18080
//
// Paths: /small (100 B), /1k (1 KiB), /100k (100 KiB); the same under /c/
// (/c/small, ...) with "Cache-Control: max-age=3600", for the cache-hit
// tests, and under /close/ with "Connection: close", so that a proxy opens
// a new upstream connection for every request; anything else is 404.
// /_stats answers "conns N\nrequests M\n": connections accepted and body
// requests served since start, so run.sh can tell how many upstream
// connections each proxy opened. It logs nothing per request.
package main
