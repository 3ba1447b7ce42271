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
// A node's settings are loaded in layers (Load): the node file, which is
// optional, then PINGORA_* environment variables, then command-line flags
// (Settings lists them), validated once; a value set by a variable or a
// flag is reported under that name ("flag --name: name: ..."). Every port
// has a bind address and an advertised one, the address the other nodes
// are told (see advertise.go); Node.ResolveAdvertise chooses the latter,
// taking the host's private IP from a Host that tests build by hand.
//
// The cluster document's rules are not restated here: each is that of the
// package owning the type the document becomes (proxy, proxy/lb,
// proxy/route, proxy/health, ratelimit), called through the same
// translation node builds with (Upstream.ProxyUpstream, Route.ProxyRoute,
// RateLimit.Rule), so a document that parses builds (issue 13). What is
// checked here is what only the document has: names, references between
// its parts, duplicates, addresses. It imports those packages and nothing
// else from the module. See ExampleParseCluster.
package config
