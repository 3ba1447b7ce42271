// Package h2 is the server side of HTTP/2 (RFC 9113) for the proxy's
// client connections, on x/net's Framer and HPACK codec.
//
// It exists for cost, not features: x/net's server runs each stream's
// writes through a channel to its connection goroutine and starts a
// goroutine for every frame larger than its 4 KiB buffer. Here a stream's
// goroutine writes its own frames into the connection's buffer under a
// mutex, and the last writer of a burst flushes (group commit). A stream
// that ends while others of its connection run leaves the flush to the
// connection's flusher, which yields once first, so responses whose
// upstreams answered together leave in one write (flush.go); a lone
// stream flushes itself, so a small response costs one lock and one
// syscall.
//
// One goroutine per connection reads frames and keeps the state machine;
// one goroutine per stream runs the Handler. Flow control is enforced both
// ways; a stream's request body is buffered up to its window.
//
// Request heads are checked before a handler sees them, against RFC 9113
// section 8 and against the grammar proxy/h1 parses and writes (a method
// token, an origin-form :path without whitespace or '#', :authority
// host[:port] without userinfo, no edge whitespace in values, a host field
// that agrees with :authority): the proxy forwards them to HTTP/1.1
// upstreams, where a space would start another request line. A malformed
// request is reset with PROTOCOL_ERROR; Config.OnReject hears of it. A
// head over the header limits is answered 431 (a gRPC call:
// RESOURCE_EXHAUSTED); its block is decoded to its end all the same, so
// that the connection's other streams and HPACK state go on (headers.go;
// TestOversizedHeaderBlockRefusesOnlyItsStream).
//
// A client whose frames ask for nothing (PING, SETTINGS, WINDOW_UPDATE,
// empty DATA, ...) beyond a budget its requests and bodies refill is
// closed with GOAWAY ENHANCE_YOUR_CALM (flood.go; TestFloodsEndConnection);
// Config.OnFlood hears of it.
//
// It imports only proxy/h1 from the module. See TestRequestResponse for a
// server and TestMalformedHeadsRefused for what it refuses.
package h2
