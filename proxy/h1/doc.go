// Package h1 is a strict HTTP/1.1 message codec for the proxy engine:
// request and response heads, body framing (content-length, chunked with
// trailers, read-until-close) and the writers for both directions.
//
// It exists apart from net/http because a proxy must refuse what an origin
// server may tolerate: Content-Length together with Transfer-Encoding,
// duplicate or malformed Content-Length, bad chunk sizes, bare LF, obs-fold,
// CR or NUL in values, and whitespace before the colon are all errors here
// (RFC 9112 section 11.2, request smuggling). It keeps no state between
// messages beyond the buffers a caller hands back to it, so a keep-alive
// connection parses every request without allocating a new header map.
//
// It imports nothing from the module. See ExampleReader_ReadRequest.
package h1
