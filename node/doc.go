// Package node wires one pingora-node together: it loads the node file and
// the cluster config, builds the proxy engine and its routing table, binds
// the listeners, serves the admin API (/status, /metrics, /healthz,
// /readyz) and runs the lifecycle (start, reload, drain, stop).
//
// Only cmd/pingora-node imports it. It translates the cluster config
// (package config) into each part's own types; the parts never import the
// config package. See ExampleNode.
package node
