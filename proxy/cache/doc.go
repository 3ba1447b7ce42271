// Package cache holds what the proxy's HTTP cache needs apart from the
// engine: the Store interface that keeps responses (a local memory store
// here; sharedcache, the cluster tier, implements it too), the stored
// entry type Meta, and the pure RFC 9111 rules the engine applies:
// Cache-Control parsing (§5.2), storability (§3, §3.5), freshness and age
// (§4.2), validation and the 304 merge (§4.3), Vary (§4.1), and the range
// and conditional evaluation a cache answers from a stored response.
//
// A Store is remote-capable and streaming by contract: an object's body can
// be read while it is still being written (Object.NewReader blocks for more
// bytes), Store.Lock collapses concurrent misses on one key into one fill,
// and a body that ends early is never stored and never read as complete (a
// reader gets an error instead of io.EOF). The engine puts the request
// in the context of every Store call (WithRequest); a Pipe streams a body
// that no store keeps; PrimaryKey places a Vary variant with its URL.
// A reader whose body is held in memory is a BlockReader: the engine sends
// a complete object's blocks to the client as they are stored (one writev
// of head and body over HTTP/1.1), not a copy.
//
// Every rule takes the time as an argument, so tests run on a fake clock.
// The package imports only clock and proxy/route (the path normalisation a
// key is made of, CleanPath) from the module; it must never import
// proxy, membership, consensus, sharedcache, ratelimit, wire or node. See
// Example for a fill streamed to a reader while it is written.
package cache
