// Package consensus is pingora-go's replicated, versioned document store:
// a hashicorp/raft FSM holding documents by name, each write getting the
// next version, persisted under a data dir, bootstrapped and reshaped
// (autopilot) from a server list that membership supplies. It replicates
// bytes with versions and knows nothing of HTTP, routes or gossip.
//
// It may import only wire and clock from this module; never proxy,
// membership, sharedcache, ratelimit or node. See Example for a
// single-node store.
//
// # Lifecycle
//
// New opens DataDir (an exclusive LOCK file refuses a second process with
// ErrLocked), opens raft.db (raft-boltdb/v2: log and stable store) and
// snapshots/, and loads applied.msgpack, the FSM state persisted after
// every applied write; OnApply is called for each restored document before
// New returns, so a restarted node serves its last config before any
// network. (raft does not persist its commit index, so without this file a
// node would replay its log only after rejoining a quorum. Entries and
// snapshots at or below the persisted index are skipped, so nothing is
// applied twice.) Start opens the transport and starts raft and the loops.
//
// # Transport
//
// raft's network transport runs over a listener and a dial function the
// caller may give (Config.Listen, Config.Dial; default TCP on BindAddr),
// consensus's own seam in place of raft's StreamLayer, so a caller needs no
// raft import and can put raft behind TLS or share its port with other
// protocols: node shares the cluster port with wire by first byte (issue
// 13), and FirstBytes lists the bytes a plain raft connection opens with,
// for such a caller to route. Config.Transport replaces it all (tests:
// raft's in-memory transport).
// Shutdown transfers leadership when this server leads a multi-voter
// cluster, then stops; Close stops at once (a crash, for tests).
//
// # Bootstrap and autopilot
//
// node calls Reconcile with membership's full server list on every change.
// When this server has no raft state, BootstrapExpect servers are alive, and
// no known server reports HasState, the server with the lowest ID among the
// BootstrapExpect lowest alive IDs bootstraps with them all as voters; the
// others wait to be contacted. A server with state never bootstraps, and
// HasState is true once raft has a log, not only when it was on disk at
// New, so a server whose data dir was lost never bootstraps next to
// servers that formed the cluster in their current process.
// BootstrapExpect 1 bootstraps at once; 0 never bootstraps (a joiner).
//
// After that, on the leader, hashicorp/raft-autopilot keeps the
// configuration: the reconcile step adds alive servers missing from raft as
// non-voters (autopilot.AddServer), except servers that report another
// cluster's ID or raft state without an ID, and servers at the raft
// address of another server that membership shows alive (AddServer would
// take the new one for a replaced host and remove the live one; at a dead
// server's address it still does); autopilot promotes a non-voter
// once it has been healthy for Timing.ServerStabilizationTime in a row, up
// to MaxVoters voters (promoter, which counts the time itself: autopilot
// v0.3.0 does not move StableSince); servers that Left are removed at
// once; failed servers, and servers in raft that membership does not
// list, are removed once Timing.DeadServerGrace has passed, never more
// than a minority of voters at a time and never below MinQuorum voters.
// RemoveServer removes one on request. Autopilot's server stats come from
// the leader's own heartbeat observations rather than an RPC to each
// server, so a lagging log index is not seen; a server that reports
// Recovering counts as unhealthy instead (below). A server removed and
// added back gets a new replication, which reports failures but no
// resumption: the leader forgets a server's failures when raft stops or
// starts replicating to it, and ignores late reports of a stopped
// replication (see observe).
//
// # A server that lost its data dir
//
// A server that starts without raft state is Recovering (recovery.go): a
// new server, or a voter restarted under the same ID with an empty data
// dir, which has lost its log and its vote record. Until it has caught up
// with a leader it neither grants nor asks for votes (a filter around the
// transport), so it can neither vote twice in a term nor help elect a
// leader that misses entries it had helped commit; node gossips the flag,
// and the leader demotes such a voter to a non-voter (when the other
// voters keep a quorum without it), counts it unhealthy, and autopilot
// promotes it back once it has caught up and stayed healthy for
// ServerStabilizationTime. The servers forming a new cluster together
// stop recovering when they see each other, since nothing was ever
// committed. The file RECOVERING in DataDir marks a recovery under way,
// so that a server that stops before it has caught up, holding part of
// the log, is still recovering when it starts again.
//
// The first leader writes a random cluster ID into the log (clusterid.go):
// ClusterID, kept with the applied state and snapshots, tells a server's
// cluster apart from another one's.
//
// # Writes and reads
//
// Put validates (name, MaxDocSize, Config.ValidateDoc) before proposing and
// returns ErrInvalid with nothing replicated; on a follower it returns a
// *NotLeaderError naming the leader for node to forward to; the
// compare-and-set on ifVersion runs inside the FSM (ErrConflict with the
// current version); without quorum it returns ErrNoQuorum within ctx's
// deadline or Timing.ApplyTimeout. While no leader is known (an election),
// Put, GetConsistent, GetCurrent and RemoveServer first wait up to
// Timing.LeaderHold for one, so a leader change costs a client a short
// delay, not a 503. Get and History are local reads that
// work without a leader; GetConsistent is linearizable (a raft barrier on
// the leader). Status is the JSON-friendly raft section of /status.
//
// # Dependencies
//
// raft-boltdb/v2 v2.3.1 imports github.com/hashicorp/go-metrics/compat,
// which go-metrics v0.7.0 (required by raft v1.8.0 and memberlist v0.7.0)
// no longer has. consensus/internal/gometricscompat is a tiny module of that
// path that forwards to go-metrics v0.7.0, wired in go.mod with a replace
// directive.
package consensus
