// Package hostile holds the malformed and hostile client inputs the proxy's
// table tests try, one list per class of attack (issue 11: HTTP/2 request
// heads that would become ambiguous HTTP/1.1, HTTP/1.1 heads, h2c upgrade
// smuggling, request heads a phase hook spoils), with the outcome each must
// get, so that the tests of proxy, proxy/h1 and proxy/h2 and the fuzz
// targets' seed corpora share one list. H2Conn is the raw HTTP/2 client
// that sends what Go's own client refuses to.
//
// It imports nothing from the module; import it only from _test.go files.
// See proxy's TestH2MalformedRefused for its use.
package hostile
