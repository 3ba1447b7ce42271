// Package config parses and validates pingora-node's two documents: the
// node file (local: name, addresses, listeners, certificates) and the
// cluster config (replicated: upstream groups and routes).
//
// Both are YAML (JSON is accepted too). Unknown keys and invalid values are
// refused with the file, line and field path, for example
// "cluster.yaml:14: upstreams[0].peers[1].addr: missing port in address".
// Validation is pure: it never touches the network or the file system, so
// a cluster config can be checked before it is replicated.
//
// It imports nothing from the module; node translates these types into
// each part's own. See ExampleParseCluster.
package config
