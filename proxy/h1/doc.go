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
// The request grammar it enforces (ValidMethod, ValidTarget,
// ValidAuthority, ValidFieldValue) is exported so that a request from
// another protocol can be held to it (proxy/h2 does), and WriteRequestHead
// refuses (ErrUnwritable) a head that would not parse back as the same
// request rather than clean it, writing nothing. A ParseError's Code names
// what was refused with a fixed label, for metrics.
//
// It imports nothing from the module. See ExampleReader_ReadRequest.
package h1
