// Package lb picks one backend of an upstream group for a request: smooth
// weighted round robin, weighted random, least connections, power of two
// choices, ketama consistent hashing and FNV hashing.
//
// A Selector is an immutable snapshot built by New from the group's
// configuration; only the per-peer State (in-flight count and health) is
// shared and mutable, so the proxy keeps one State per peer address and
// hands the same *State to every generation of selectors it builds. All
// selection methods are safe for concurrent use and never allocate.
//
// Policies are chosen by name through New's explicit table (see Policies);
// there is no init() registration. Randomness comes in through
// Options.Rand.
//
// The package imports only ketama from the module (and the standard
// library); it must never import proxy, membership, consensus, sharedcache,
// ratelimit, wire or node. See Example for selection with health and
// retries.
package lb
