// Package membership tells each node who else is in the cluster: it wraps
// hashicorp/memberlist (join by address list, msgpack node metadata, events)
// and publishes an immutable ketama Ring over the members that can answer
// a call: alive, ready, and gossiping a cluster RPC address.
//
// It may import ketama, wire and clock from the module, never proxy,
// consensus, sharedcache, ratelimit or node. See Example for a two-node
// cluster and ExampleRing for key placement.
//
// # The ring's life cycle
//
// A key's owner is called over the cluster RPC, so the ring holds only the
// members that answer: a member is on it while it is alive (or suspect),
// its metadata says StateReady, and it gossips Addrs.Cluster. Each ring
// member carries that address (Ring.Addr, Ring.OwnerAddr): the snapshot
// alone says whom to call and where.
//
//	                join (gossip)
//	                     |
//	                     v
//	+--------------------------------------+
//	| member, starting (or ready without   |   off the ring: alive, but
//	| a cluster RPC address)               |   cannot answer calls yet
//	+--------------------------------------+
//	                     | Meta.State = ready, Addrs.Cluster set
//	                     | (node: listeners bound, RPC serving,
//	                     | a config that routes: /readyz 200)
//	                     v
//	+--------------------------------------+
//	| on the ring                          |   owns keys; peers call it at
//	|                                      |   Ring.Addr(name)
//	+--------------------------------------+
//	      | Meta.State = draining            | dies without a leave
//	      | (node.Shutdown, first step)      | (crash, kill, partition)
//	      v                                  |
//	+----------------------------+           |
//	| draining: off the ring,    |           |
//	| still answering calls      |           |
//	| (in flight, hand-offs)     |           |
//	+----------------------------+           |
//	      | Leave                            |
//	      v                                  v
//	+-------------+                  +------------------+
//	| left        |                  | dead (off the    |
//	+-------------+                  | ring at once)    |
//	                                 +------------------+
//	node then stops its RPC; left and dead members are forgotten after
//	ReapAfter, and a member that comes back starts again at the top.
//
// So a node leaves every ring before it stops answering: peers stop
// sending it calls while it still serves the ones under way
// (node/nodetest's TestDrainingLeavesRingBeforeRPCStops). A member that dies
// without leaving owns keys until failure detection marks it dead (about
// a second with the fast profile); callers meanwhile fall back (see
// sharedcache and ratelimit). Ring.Digest covers names, weights and
// addresses, so two nodes with one digest place and call alike.
//
// # Timing profiles
//
// Failure detection is the time from a node dying without Leave to every
// other node marking it dead; convergence is the time from five nodes
// starting (each joining a random earlier node, in random order) to all five
// agreeing on one ring digest. Measured on loopback, 5 nodes in one process
// on a 2-core machine (TestConvergeAndDetectFailure; the lan row with
// PINGORA_MEASURE_LAN=1 go test -run TestMeasureProfiles):
//
//	profile  probe  suspicion (5 nodes)  failure detection  convergence
//	lan      1s     4s..24s              6.0s               0.2s
//	fast     200ms  0.6s..1.2s           0.9-1.1s           0.06-0.11s (once 2.4s:
//	                                                        a lost packet, healed by push/pull)
//
// On a real LAN expect the lan figures plus the network's round trips; with
// more nodes suspicion grows with log10(n). A 2|3 partition heals into one
// ring 0.3-0.9s after the network heals with the fast profile (seeds are
// re-joined every RejoinInterval: 1s fast, 30s lan; not by a node that is
// draining or has left).
//
// A graceful Leave is seen by all in 0.14-0.19s with the fast profile,
// which is why node drains and then leaves instead of just stopping.
//
// # Metadata that always arrives
//
// memberlist gossips a metadata change a few times and never again, and
// v0.7.0 can drop it outright (hashicorp/memberlist#263, pinned by
// TestUpstreamQueueLosesBroadcast): a node's update made while its first
// alive message is still queued, as at start-up, was lost in 3 of 10
// three-node formations, and peers saw it only at the next push/pull, 30 s
// later with lan. So peers acknowledge each metadata they apply (a user
// message naming its hash; meta_sync.go), and a peer that has not done so
// MetaAckTimeout after the broadcast is asked, then sent our state
// directly over TCP. A change reaches every reachable peer within about
// MetaAckTimeout + MetaSyncInterval plus a round trip: 0.8 s measured with
// lan when every UDP packet to the peer is dropped
// (TestMetaDeliveredWhenBroadcastLost).
//
// # Joining, names, departed members
//
// Start joins the seeds in the background, with backoff, and the join
// status (Status.Join) says how it goes. A node that finds another live
// node with its name (it answers a ping for that name at another address)
// stops gossip and reports ErrNameConflict on Err; the same node restarted
// is let back in. A member that meets such a newcomer when it re-joins a
// seed keeps its name and runs on (it logs a warning naming the address):
// the newcomer is the one refused. Dead and left members stay in Members for ReapAfter.
//
// # Force-leave and cluster identity
//
// ForceLeave drops a dead member from every node's member list: the intent
// travels as a gossip user message (memberlist has no force-leave; serf
// does the same), each node applies it once the member is dead to it too
// and passes it on once; 31 ms to drop it on 3 nodes (TestForceLeave). A
// live member is refused; a forced-out member that really rejoins is a
// member again.
//
// Meta.ClusterID is the identity of the replicated state a node holds.
// Nodes with different non-empty IDs never merge: memberlist's merge
// delegate refuses the join on both sides, its alive delegate ignores the
// other cluster's nodes, and the joining node learns why through Refused
// (see identity.go).
package membership
