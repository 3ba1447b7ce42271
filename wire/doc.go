// Package wire carries node-to-node request/response calls over one TCP port
// per node: length-prefixed frames with msgpack payloads, many concurrent calls
// multiplexed on one reused connection per peer (see Example).
//
// It imports nothing from the module except clock, and never membership,
// consensus, sharedcache, ratelimit, proxy or node. The network comes in
// through the Dialer and net.Listener seams; wire/wiretest is the in-memory twin.
//
// # Framing
//
// A connection opens with one magic byte, ProtoRPC (0xC7), sent by the dialer.
// The byte lets a later port multiplexer route other protocols (raft, say)
// arriving on the same port, as Consul does; HTTP and TLS never start with it.
// After it, both directions carry frames:
//
//	+----------------+--------+-----------------+---------------------+
//	| length  uint32 | type 1 | call ID  uint64 | payload             |
//	| big endian     | byte   | big endian      | length-9 bytes      |
//	+----------------+--------+-----------------+---------------------+
//
// length counts everything after itself (so it is at least 9) and never
// exceeds the reader's MaxFrameSize; a larger prefix closes the connection
// before anything is allocated. Types:
//
//	1 request   payload = uint8 method length, method, msgpack body
//	2 response  payload = msgpack body
//	3 error     payload = uint8 code (0 handler error, 1 unknown method), UTF-8 message
//	4 goaway    payload = UTF-8 reason; the sender closes the connection next
//
// Call IDs are chosen by the dialer, unique per connection; responses may come
// back in any order. A caller that gives up (deadline) forgets its ID and a
// late response is discarded; the handler is not told (deadlines are not
// propagated in this version). An unknown frame type or a malformed frame is a protocol
// error: the server answers with goaway (call ID 0) and closes.
package wire
