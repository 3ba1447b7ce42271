// Package ratelimit decides requests against rate-limit rules, per node
// (scope local) or across the cluster (scope global), from local state
// only: no decision waits on the network.
//
// It imports ratelimit/estimator, wire and clock from the module, and
// never proxy, membership or node: it sees the ring through its own Ring
// interface and requests through its own Request type.
package ratelimit
