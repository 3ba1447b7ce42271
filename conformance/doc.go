// Package conformance holds the helpers of scripts/conformance.sh, which
// runs outside test suites (h2spec, the gRPC interop client and server,
// the WebSocket tests) against a pingora-node binary on loopback. The Go
// code here is tooling for that script only: confhelper makes certificates,
// picks ports, serves the HTTP/1.1 origin and waits for readiness. It
// imports nothing of the module: the suites see the node only through its
// listeners, like any client.
package conformance
