// Package sharedcache is the cluster's HTTP cache: each key's ring owner
// holds it and fills it from the origin once for every node, other nodes
// ask the owner over wire and keep brief hot copies. A Cache is the
// proxy's cache.Store for the routes that share (cache.shared), and
// Local is the plain local tier for the routes that do not.
//
// It imports tinyufo, wire, clock and proxy/cache from the module, never
// membership, consensus, ratelimit, node or proxy: the ring comes in
// through the Ring interface (membership.Ring plus node's adapter), the
// origin through Origin (proxy.Server.FillCache, wired by node). See
// Example.
//
// # Tiers
//
// The local tier (Config.MaxBytes, TinyUFO) holds the keys this node owns
// and the keys of unshared routes. The hot tier (Config.HotBytes, TinyUFO
// as well, so only keys asked for again survive its admission) holds
// copies of other nodes' objects as they stream in, used while fresh, so
// a very hot key does not pin its owner's NIC; and the objects this node
// filled itself while their owner could not be asked.
//
// # A miss on another node's key
//
// The engine's Lookup asks the owner (get, opLookup). On a miss the
// engine calls Lock: this node's requests first collapse on the key's
// hot-tier lock, so one call per node goes out; the owner then looks the
// key up, or waits on its own lock (whose waiters are local requests and
// peers alike), or takes the lock and runs the fill through Origin, its
// own route and phases, on a goroutine that outlives the call. It answers
// "accepted" at once and the object's head when the fill publishes it,
// then streams the body as the origin sends it. The caller's hot fill
// takes the stream, and its readers (the engine's requests) read it as it
// arrives. A body cut mid-way aborts the hot fill: readers get an error,
// never a short body as whole, and nothing partial is stored. A request
// received from another node is never forwarded: the owner serves it from
// its local tier or its origin.
//
// Every call carries the caller's ring Version (wire.WithRingVersion). An
// owner answers "not the owner" (wire.NotOwner) for a key its own ring
// gives to another node, and the caller then fills the key itself, from
// the origin into its hot tier, rather than bounce the request. An owner
// whose ring differs but still gives it the key serves it.
//
// # Failures
//
// An owner that does not answer within OwnerTimeout, or whose call fails,
// is suspect for SuspectFor: this node serves its keys itself meanwhile
// (filling into the hot tier). Every call is marked wire.WithIdempotent, so
// a call on a pooled connection that died unseen (the owner restarted, a
// blip) is sent again on a new connection rather than failing: a restart
// does not make the owner suspect (TestStaleConnNotSuspect). The owner's answer "accepted" tells a slow
// origin apart from a dead owner: then the caller waits for the head as
// long as the route's lock timeout, as a local waiter would. A node that
// leaves the ring drains (Drain): it answers new lookups and fills "not
// the owner" and finishes the streams in flight.
//
// # Ring changes
//
// SetRing keeps the placements it replaces for HandoffWindow. A miss on a
// key that moved to this node asks the key's owners under those
// placements (get, opHandoff, served whoever owns the key now) before the
// origin, and copies what one holds into the local tier: growing 3 to 5
// nodes moves keys without sending them to the origin, and shrinking back
// finds them on their earlier owners.
//
// # Purge
//
// Purge selects by URL (every Vary variant and key addition: they extend
// the URL's key after a NUL byte), by URL prefix, and by surrogate key
// (TinyUFO tags from Surrogate-Key and Cache-Tag). PurgeCluster runs it on
// every ring member and reports each node's count; it drops hot copies,
// and dooms fills under way so they store nothing purged.
//
// Every node logs the purges it applies (ID, time, selectors; bounded by
// PurgeLogBytes and PurgeLogAge). SetRing, before it installs a ring
// with members the current one lacks, exchanges logs with each
// (methodPurgeSync): each side applies the purges it missed to the
// objects requested before they ran, so a node that was out of the ring
// (either side of a partition, or paused) does not serve what a purge
// dropped. A log that no longer reaches back to the gap makes the node
// drop every object requested before the log's horizon. A member a purge
// call could not reach gets the log by RetryPurgeSync.
//
// # Upgrades
//
// A graceful upgrade keeps the node's name and ring share, so its
// successor inherits the local tier: Bequeath streams the purge log and
// every complete object over a stream the hand-off passed, within a
// deadline, then the purges applied while the old process drains; Inherit
// stores the objects as they arrive (never a key held or being filled
// already, never what a logged purge selects) and exchanges purge logs
// with every member when the stream ends. See inherit.go.
package sharedcache
