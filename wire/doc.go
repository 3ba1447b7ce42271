// Package wire carries node-to-node calls over one TCP port per node:
// length-prefixed frames with msgpack payloads; unary calls multiplexed on
// one reused connection per peer, and streamed answers (cache bodies) on
// connections of their own (see Example).
//
// It imports nothing from the module except clock, and never membership,
// consensus, sharedcache, ratelimit, proxy or node; Prometheus export lives
// in wire/wireprom. The network comes in through the Dialer and
// net.Listener seams; wire/wiretest is the in-memory twin and fault
// injector.
//
// # Port and first byte
//
// A connection opens with one magic byte sent by the dialer: ProtoRPC
// (0xC7). A Mux shares one listener between protocols by that byte, as
// Consul's server port does, and hands each connection on with the byte
// still unread. The bytes of the cluster port:
//
//	0xC7  ProtoRPC   wire (this package)
//	0xC8  ProtoRaft  raft (node hands raft's side of the Mux to consensus
//	                 as its listener; see node's package doc)
//
// Listen may take several bytes for one protocol: node also gives raft the
// bytes raft's own messages start with, for peers that dial raft without
// the protocol byte.
//
// HTTP and TLS never start with either. With TLS, the Mux sits over the
// TLS listener, so the byte travels encrypted and every protocol on the
// port gets the cluster's mutual TLS.
//
// # Frames
//
// After the magic byte, both directions carry frames:
//
//	+----------------+--------+-----------------+---------------------+
//	| length  uint32 | type 1 | call ID  uint64 | payload             |
//	| big endian     | byte   | big endian      | length-9 bytes      |
//	+----------------+--------+-----------------+---------------------+
//
// length counts everything after itself (so it is at least 9) and never
// exceeds the reader's MaxFrameSize; a larger prefix closes the connection
// before anything is allocated. Types (C: sent by the caller, S: by the
// server):
//
//	1 request  C  payload = uint8 method length, method, msgpack body.
//	              Version 1's request, still served: no deadline, no ring.
//	2 response S  payload = msgpack body
//	3 error    S  payload = uint8 code, then for code 2 (not the owner)
//	              uint64 caller ring version, uint64 server ring version;
//	              then a UTF-8 message. Ends a call or a stream.
//	4 goaway   S  payload = UTF-8 reason. The caller sends no new call
//	              on the connection and closes it when the calls it sent
//	              have ended; the sender answers those (a draining
//	              server: Server.Drain) or closes it (a protocol error)
//	5 call     C  payload = uint8 flags (bit 0: answer with a stream;
//	              bit 1: trace context follows),
//	              uint64 timeout in µs (0: no deadline),
//	              uint64 caller ring version (0: none),
//	              [bit 1: uint8 length (1-255), traceparent,
//	               uint8 length (0-255), tracestate],
//	              uint8 method length, method, msgpack body
//	6 data     S  payload = a chunk of a streamed answer (at most
//	              StreamChunkSize bytes)
//	7 end      S  empty; the stream ended cleanly
//	8 cancel   C  empty; the caller gave up on the call
//
// Error codes: 0 handler error (or panic), 1 unknown method (or not of
// the kind asked: unary or stream), 2 not the owner, 3 overloaded, 4
// deadline. Unknown codes read as handler errors with the code kept.
//
// Call IDs are chosen by the dialer, unique per connection; answers may
// come back in any order. An unknown frame type or a malformed frame is a
// protocol error: the server answers with goaway (call ID 0) and closes.
// Version 1 peers speak types 1 to 4 only; a version 1 server answers a
// call frame with goaway, so the mixed case fails loudly, never silently.
//
// # Deadlines and cancellation
//
// A call carries its caller's time left, not a wall-clock instant, so
// clocks need not agree; the server counts it from the request's arrival
// (the trip itself is not counted, which errs on the generous side). The
// handler's context ends then; a request whose deadline passed before its
// handler could start is answered with code 4 and not run, and a caller
// whose deadline passed sends nothing. A caller that is cancelled (rather
// than timed out) sends a cancel frame, which ends the handler's context.
//
// # Trace context
//
// A Tracer (ClientConfig.Tracer, ServerConfig.Tracer) gives each call a
// span on both sides, and the call carries the caller's W3C trace context
// (traceparent, tracestate) in its header, so one trace follows a request
// from node to node (issue 17). Without a Tracer, or for a call whose
// context holds no trace, bit 1 is clear and the frame is byte for byte
// what it was before. A server of the version before the field ignores
// the flag and reads the traceparent's length byte as the method's: it
// answers code 1 naming the traceparent as the method, having run
// nothing. The client then sends the call again without the trace
// context, and sends none on that connection after, so a mixed-version
// cluster keeps working with tracing on (TestOlderServerGetsNoTrace).
//
// # Streams, and why they get their own connection
//
// A stream handler's writes go out as data frames and end with an end
// frame, or an error frame if the handler fails or panics; the caller
// reads io.EOF only after the end frame, so a peer that dies mid-stream
// is an ErrPeerGone at the reader, never a short body that looks whole.
//
// Each stream gets a connection of its own (kept for the next stream when
// it ends cleanly), instead of interleaving its frames with small calls on
// the shared connection. Interleaving bounded frames only bounds the queue
// in this process: the kernel's send and receive buffers (several MiB on
// a busy link) still hold bulk bytes ahead of a small answer, and a slow
// reader would stall the shared connection unless wire grew HTTP/2's
// per-stream flow control. A connection per stream gets flow control from
// TCP and lets the NIC's per-flow queueing interleave. BenchmarkSmallCall
// measures both ways with a 64 MiB stream in flight.
//
// # Dead connections kept for reuse
//
// The unary connection and idle stream connections outlive their calls,
// and one can die unseen: a peer that restarted, or a blip that lost its
// FIN, leaves it looking alive until a call is written on it and the
// peer's kernel answers with a reset. A call that fails so, on a
// connection that delivered an answer before and with nothing come back
// since the call was sent, is sent once more on a connection dialled for
// it, as net/http's Transport retries on a dead keep-alive connection:
//
//   - always, when the request never reached the peer whole (the
//     connection was already dead, or the write failed): a partial frame
//     is never run;
//   - only for a context from WithIdempotent, when it was written whole:
//     the peer may have run it and died before answering. sharedcache
//     marks its calls (lookups, fills, remove, purge, stats); ratelimit
//     marks a sync without returned tokens and a hand-off (its doc says
//     why a repetition is safe); node's forwarded config writes are not
//     marked.
//
// A call on a fresh connection that fails, or a retry that fails, is not
// retried. ClientStats.Retries counts the retries. No check runs before a
// connection is reused: its reader goroutine is always reading and fails
// it the moment a FIN or a reset arrives (the next call dials); a peer
// that vanished without a word only a round trip can tell.
//
// # Overload
//
// A connection runs at most MaxConcurrentCalls handlers; a request beyond
// that is answered at once with code 3, so the server's reader never
// stops and small calls never queue behind slow ones.
//
// # Stats
//
// Server, Client and Mux count calls, errors by code, bytes, calls in
// flight and a latency histogram per method with atomics, and return
// snapshots from Stats; wire/wireprom exports them to Prometheus.
package wire
