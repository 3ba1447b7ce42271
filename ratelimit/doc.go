// Package ratelimit decides requests against rate-limit rules, per node
// (scope local) or across the cluster (scope global), from local state
// only: no decision waits on the network (issue 15).
//
// It imports ratelimit/estimator, wire and clock from the module, and
// never proxy, membership or node: it sees the ring through its own Ring
// interface (membership.Ring satisfies it), peers' addresses through
// Peers, and requests through its own Request type. node wires it to the
// proxy's Limiter hook and the cluster RPC. See ExampleLimiter.
//
// # Rules
//
// A Rule matches requests (route, host, path prefix, methods), builds a
// key from them (client_ip, header:NAME, cookie:NAME, query:NAME, route,
// method, host, path, or a template of several), and admits Limit per
// Period by a sliding window (prev·(1−f) + curr, f the elapsed part of the
// current window) or a token bucket (GCRA, Burst tokens). SetRules swaps a
// generation of rules atomically; a rule whose name, key, algorithm, scope
// and period are unchanged keeps its counters.
//
// Local rules count on the node: a sliding window in a count-min sketch
// (estimator.Rate, constant memory whatever the number of keys; it may
// overcount, never undercount, so it errs on limiting early), a token
// bucket as one atomic theoretical arrival time per key.
//
// # Global scope: leases from the key's owner
//
// The owner of a key is Ring.Owner(rule + "\x00" + key). It holds the
// key's counter: the sliding window (or bucket) in wall-clock windows
// aligned to the Unix epoch, so every node numbers them alike. Nodes do
// not ask it per request. A node holds a lease for each key it serves: a
// number of tokens it may admit without asking, until the lease ends.
// Deciding spends a token with one compare-and-swap.
//
// The sync loop reports to each owner in one batch per round: what the
// node admitted and refused since its last report. The owner answers each
// key with a grant (more tokens), the global count and its counter state.
// A round runs every SyncInterval (T, default 50 ms), or sooner when a key
// near its limit refuses a request or runs low on tokens (never more often
// than T/5); a round carries only the keys that have something to report.
// A limiter that holds nothing (no key, no counter) stops the loop's
// ticker until its next key: an idle node does not wake every T.
//
// The owner counts a token when it grants it, not when it is spent:
// granting adds it to the current window (or takes it from the bucket),
// and an unspent token comes back when the node returns it or the lease
// expires. So the count includes every request a lease may still admit,
// and an owner grants only while the count stays within the limit. A
// grant is the node's demand over two sync intervals (at least the local
// share's burst below, at most two sync intervals of the whole limit),
// first come first served, out of what the window will have freed T/5
// from now (the next early round), so that what frees in a window's last
// round is granted in that window. A sliding-window lease ends with the owner's
// window, so that what it admits is counted in the window it is admitted
// in; on a quiet key (half the limit or less counted) a lease lasts
// LeaseTerm (default 5 s) instead and its unspent tokens are counted again
// in every window it crosses (pessimistic, and harmless on a quiet key).
// A lease is timed from when the node sent the report it answers, so the
// node's lease always ends before the owner's record of it.
//
// Without a lease a node decides by its local share: the rate L/N (L the
// limit, N the nodes on the ring) with a burst of one sync interval of it,
// b = ⌈L·T/(N·P)⌉ (P the period). It does so for a key it has no answer
// for yet, for a quiet key whose lease ended, and while the owner cannot
// be reached; the requests it admits so are reported and counted then.
//
// # What scope global promises
//
// While every node that serves a key holds a lease (the steady state) the
// key never admits more than its limit in any of its owner's windows:
// every admitted request spent a token its owner had counted. (Grants run
// T/5 ahead of the window's slide, so an interval of one period that
// straddles two windows may admit up to L·T/(5P) more: 1 % by default.) Admissions without a lease
// are the only excess. A node admits at most b plus what its share
// accrues until its first answer, about 2b, per start on a key (a key it
// had not seen, or a quiet key whose lease ended), and starts at most once
// per key and window while the owner answers. So in any period:
//
//	admitted ≤ L + N·2⌈L·T/(N·P)⌉ ≈ L·(1 + 2T/P) + 2N
//
// the extra being reached only when all N nodes start on a key at its
// limit in the same window (10 % + 2N with the defaults at P = 1 s; none
// in steady state). Measured: TestGlobalAccuracySim (3 and 5 nodes, load
// even or on one node: 996-1,000 of 1,000 every second), TestFreshStartBound,
// and the real processes of bench/ratelimit (bench/RATELIMIT.md). A token
// bucket keeps the same bound in tokens.
//
// # Failures
//
// Owner out of reach (partition, or a crash not yet noticed by
// membership): a report that fails, or an answer that says the node asked
// is not the owner, puts the key in fallback: the node decides by its
// local share L/N (counted in Stats.Fallbacks and RuleStats.Fallback) and
// returns to leases at the first answer. A report written on a pooled
// connection that died before any answer came back (the owner restarted,
// a blip) is sent again on a new connection (wire.WithIdempotent), unless
// it returns a lease: an owner that applied it before dying, or whose
// connection alone died, applies it twice, which counts high (extra
// twice, the lost grant until its lease ends), not low, but would refund
// a returned lease twice (retrySafe). A hand-off is sent again likewise.
// Nodes in fallback admit
// (N−k)·L/N together when k of N are the owner's side; a partition that
// cuts k nodes from an owner can cost up to k·L/N per period over the
// limit (the owner's side still admits up to L) until membership declares
// the other side dead. Then each side's ring holds its own nodes only and
// they own every key again: each side admits up to L while the partition
// lasts (availability over accuracy, as the ring cannot tell a partition
// from the other side's crash).
//
// Ring change, graceful (a node joins or drains): the old owner hands each
// counter it no longer owns to the new owner (MethodHandoff, Drain on
// leave), with its leases; the new owner takes the larger count. One that
// arrives twice (sent again, or re-offered after a lost answer) adds its
// leases once: a lease takes the most any hand-off brought for its node
// (TestHandoffAbsorbedOnce). Reports
// sent with an old ring get a not-owner answer and fall back for a round.
//
// Graceful upgrade: the ring keeps the node's name, so nothing above
// moves its counters; the old process hands them to the successor that
// now serves its cluster address (HandOver), which merges them the same
// way (TestUpgradeSim). While a successor that has the node's gossip is
// slow to serve, the old process's ring may leave the node out (a
// StandbyRing): it hands the next node copies and keeps its counters for
// HandOver (TestStandbyKeepsCounters).
//
// Owner crash: the new owner rebuilds the counter from the reports: each
// node's first report to a new owner carries a hint, the counter state of
// its last answer, and the new owner keeps the largest. A crash loses the
// grants the dead owner made after the last answer each node saw (one
// sync round, at most about 2·L·T/P) and the requests it admitted itself
// in that round; requests admitted in fallback meanwhile are reported and
// counted by the new owner. TestOwnerCrashSim and the kill -9 runs of
// bench/ratelimit measure it.
//
// # Memory
//
// A key of a global rule costs about 236 bytes on a node that uses it and
// 258 on its owner (with one lease; each more node holding a lease adds
// 64), besides the key's bytes (keys are cut at 256 bytes). Keys idle for
// max(P, 2·LeaseTerm) are dropped, and a rule tracks at most MaxKeys keys
// on each side; past it a key is decided by the local share over the
// rule's sketch and counted in RuleStats.Untracked, so millions of client
// addresses cannot grow the heap without bound.
package ratelimit
