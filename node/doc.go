// Package node wires one pingora-node together: it loads the node file and
// the cluster config, builds the proxy engine and its routing table, binds
// the listeners, serves the admin API (/status, /metrics, /healthz,
// /readyz, /v1/config, peer enable/disable) and, when the node file names
// their addresses, runs gossip membership, the raft-replicated cluster
// config, the node-to-node RPC and the rate limiter's global counters
// (ratelimit, plugged into the proxy's Limiter hook; node/ratelimit.go).
// It runs the lifecycle (start, reload,
// drain, stop) and the zero-downtime upgrade, handing its sockets and
// cluster identity to a successor process (proxy/handoff). Each part of a
// node is one entry of an ordered list (partList in node.go, the
// machinery in parts.go): the parts start in order, drain and stop in
// reverse, and each waits for the goroutines it started.
//
// # The cluster port
//
// Node-to-node traffic other than gossip goes through one TCP port,
// cluster_addr (default bind_addr:7947), as Consul's server port does
// (issue 13):
//
//	listener (bound, or inherited in a hand-off: "cluster")
//	  -> Options.Network.ClusterListener (tests: faults; default none)
//	  -> TLS (cluster_tls: mutual, a shared CA)
//	  -> wire.Mux, by the first byte of each connection:
//	       0xC7 wire.ProtoRPC   the RPC server (rpc.go): cache, rate limits,
//	                            config writes sent on to the leader (forward.go)
//	       0xC8 wire.ProtoRaft  raft (the byte removed), and raft's own
//	       0x00-0x04            message types from a peer that dials raft
//	                            plainly (consensus.FirstBytes; the byte kept)
//
// Every connection the node opens to it goes through one dial function
// (newClusterDial): TCP, Options.Network.ClusterDial, then TLS; raft's
// dialer then sends 0xC8 when the peer gossips raft on its cluster port.
// raft_addr gives raft a port of its own behind the same wrap and TLS.
// consensus gets a listener and a dial function (consensus.Config.Listen,
// Dial), so node needs no raft import. The cluster listener is handed to
// a successor process once, whole; the successor builds its Mux on it.
//
// # Writes on a follower
//
// A config write, a force-leave, a leaving node's own removal and a
// linearizable read sent to a follower's admin API go to the raft leader
// over the cluster RPC (forward.go), at the cluster address the leader
// gossips, with the caller's deadline; the leader runs them as local
// requests, never forwards them again, and answers with the admin API's
// status and body, which the follower returns unchanged.
//
// Only cmd/pingora-node imports it. It translates the cluster config
// (package config) into each part's own types; the parts never import the
// config package. See ExampleNode.
package node
