// Package nodetest starts several real nodes (node.Node: memberlist
// gossip, raft, the cluster RPC, proxy and admin listeners) on loopback in
// one test process, with a fault injector between them. The cache and
// rate-limit cluster tests are written on it.
//
// Start builds a Cluster of N nodes with the fast gossip and raft timings
// (the first node is every other node's seed; bootstrap_expect is N and
// the cluster config file seeds version 1). Faults sit between every pair
// of nodes, per direction, through node.Options.Network:
//
//	                 gossip (UDP packets, TCP streams)
//	node a ──[Faults.Network("a")]──────────────────────────► node b
//	        cluster port: raft and RPC (TCP, wiretest.Faults)
//
// The faults:
//
//   - Partition (symmetric) and CutOneWay: gossip packets across a cut
//     are dropped and gossip streams refused; cluster-port bytes are held
//     as TCP holds them and flow again at Heal.
//   - Delay: added to cluster-port bytes and to gossip packets.
//   - DropFrames: a fraction of RPC (wire) frames lost whole; raft's
//     connections are never dropped from.
//   - Kill: the node's sockets are closed without a leave, as a crash
//     closes them (peers detect a failure; raft keeps it a voter), and
//     Restart starts it again with the same name, data dir and addresses.
//
// A node is known by the addresses it listens on: the fault injector maps
// each gossip and cluster-port address to its node's name, so faults are
// set by name. Nodes share 127.0.0.1.
//
// It imports node and what node may import; import it only from _test.go
// files. See cluster_test.go for the partition test of issue 13.
package nodetest
