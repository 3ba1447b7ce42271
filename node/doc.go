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
// Only cmd/pingora-node imports it. It translates the cluster config
// (package config) into each part's own types; the parts never import the
// config package. See ExampleNode.
package node
