// Package health decides whether upstream peers may receive traffic, from
// three sources: active checks (TCP connect, or an HTTP(S) request with an
// expected status range, flipped after Rise successes or Fall failures in a
// row), passive observation (consecutive proxy failures eject a peer for a
// cool-off that doubles on repeat), and an operator's manual disable. The
// combined verdict is written to the peer's lb.State, which every selection
// policy reads.
//
// Records are kept per peer key (a stable identity, never a pointer) in a
// Registry that outlives routing tables, so a config swap that keeps a peer
// neither forgets nor resets its health, and Registry.Retain frees the
// records of peers a swap dropped. It imports proxy/lb and clock only. See
// ExampleRegistry.
package health
