package node

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/membership"
	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/proxy/route"
	"github.com/pingora-go/pingora-go/ratelimit"
	"github.com/pingora-go/pingora-go/wire"
)

// limitsPart is the node's rate limiter: the rules come from the cluster
// config; a global rule's counters are held by their ring owners and
// reached over the cluster RPC (issue 15).
type limitsPart struct {
	l      *ratelimit.Limiter
	client *wire.Client
}

// topKeys is how many of each global rule's busiest keys /status lists.
const topKeys = 10

// newLimits builds the limiter and its proxy hook. It starts nothing.
func (n *Node) newLimits() (*limitsPart, error) {
	client, err := wire.NewClient(wire.ClientConfig{Dialer: wire.DialerFunc(n.dial), Logger: n.log.With("part", "ratelimit")})
	if err != nil {
		return nil, err
	}
	l, err := ratelimit.New(ratelimit.Config{
		Self: n.cfg.Name, Ring: n.limitRing, Peers: memberPeers{n}, Client: client,
		Logger: n.log.With("part", "ratelimit"),
	})
	if err != nil {
		client.Close()
		return nil, err
	}
	if err := n.reg.Register(limitsCollector{l}); err != nil {
		client.Close()
		return nil, fmt.Errorf("ratelimit metrics: %w", err)
	}
	return &limitsPart{l: l, client: client}, nil
}

// limitRing is the ring global rules shard by: membership's, or none
// (this node alone) when the node does not gossip. While this process has
// released the node's identity to an upgrade's successor that is not
// serving yet, and for longer than a probe interval, it is the ring
// without this node (stalled).
func (n *Node) limitRing() ratelimit.Ring {
	mc := n.limitMembers()
	if mc == nil {
		if m := n.predecessorMembers.Load(); m > 1 {
			return predecessorRing{self: n.cfg.Name, n: int(m)}
		}
		return nil
	}
	r := mc.Ring()
	if n.stalled(mc, time.Now()) && hasOther(r, n.cfg.Name) {
		return ringWithout{r, n.cfg.Name}
	}
	return r
}

// stalled reports whether, at now, this process released the node's
// gossip and raft to a successor more than a probe interval ago and the
// successor is not serving yet. A successor serves within milliseconds
// of the release; one that stalls (killed, or opening a large raft log)
// leaves the node without gossip, and the others declare it dead after
// the suspicion timeout (about 5 s with lan) and move its keys to the
// next node on the ring. This process's ring still lists the node: it
// went on counting the keys it owned as their owner, from its own
// clients' requests, while the new owner counted everyone else's, and
// the key admitted twice its limit (chaos/upgrade-fail.sh, HOLD=12
// PHASES=b: 396-397/s of 200). Past a probe interval, well before the
// others can declare the node dead, this process reports those keys to
// the next node: it refuses them until it owns them (the reports fall
// back to the local share), then counts them.
func (n *Node) stalled(mc *membership.Cluster, now time.Time) bool {
	at := n.releasedAt.Load()
	return at != 0 && now.Sub(time.Unix(0, at)) > mc.ProbeInterval()
}

// ringWithout is a ring with one node taken out: each key goes to the
// next node on it, as the others' rings send it once they declared that
// node dead. It is a standby ring: the counters the limiter hands the
// next nodes stay here too, for HandOver to give the successor once it
// serves (the others may not have declared the node dead, and then the
// next node does not own them; ratelimit.StandbyRing).
type ringWithout struct {
	r    *membership.Ring
	self string
}

func (w ringWithout) Owner(key string) (string, bool) {
	for _, id := range w.r.Owners(key, 2) {
		if id != w.self {
			return id, false
		}
	}
	return "", false
}

func (w ringWithout) Owners(key string, n int) []string {
	out := w.r.Owners(key, n+1)
	if i := slices.Index(out, w.self); i >= 0 {
		out = slices.Delete(out, i, i+1)
	}
	return out[:min(n, len(out))]
}

// Len counts this node still: the others decide its keys by their local
// shares (the stalled process refuses the reports it no longer owns the
// keys for) and so does this process, which still serves its clients, so
// each share stays a 1/Len of the limit. Leaving this node out gave this
// process half the limit instead of a third on a ring of 3, and the key
// admitted 7/6 of it while the successor stalled (chaos/upgrade-fail.sh
// phase d: 231-244/s of 200).
func (w ringWithout) Len() int { return w.r.Len() }

// predecessorRing is a successor's ring until its gossip starts: this
// node owns every key, as with no ring (the successor counts what reaches
// it, and grants nothing until the old process's counters arrive,
// ratelimit.Limiter.AwaitPredecessor), but the local share divides the
// limit by the n nodes the old process's ring held. A successor whose
// gossip is slow to start (chaos/upgrade-fail.sh phase d holds it 2 s)
// serves its clients meanwhile, and decided their requests by the whole
// limit, on top of what the other nodes admitted.
type predecessorRing struct {
	self string
	n    int
}

func (r predecessorRing) Owner(string) (string, bool) { return r.self, true }
func (r predecessorRing) Owners(string, int) []string { return []string{r.self} }
func (r predecessorRing) Len() int                    { return r.n }

func (ringWithout) Standby() bool { return true }

var _ ratelimit.StandbyRing = ringWithout{}

// limitMembers is the membership the rate limiter follows: the one whose
// gossip started last, running or stopped since (its ring stays as it
// was), or none before gossip first starts. An upgrade stops this
// process's gossip when it hands the node's identity to the successor,
// and the process drains after that: with no ring, the limiter took
// itself for the owner of every key, granted its draining requests leases
// from counters seeded by the owners' last answers, and handed those
// counters to the successor, which passed them on to the real owners: a
// key's count there jumped by the whole limit and its second admitted as
// few as 542 of 1,000 (a non-owner upgraded, chaos/upgrade-limits.sh with
// UPGRADE=other). A failed hand-off makes a new membership, whose ring is
// empty until its gossip starts, and holds only this node until it has
// joined the others again: the released one's ring serves until then
// (settled; TestLimitRingKeptUntilNewGossipStarts,
// TestRingsKeptUntilRejoined). The cache's ring loop follows the same
// membership (cachePart.follows).
func (n *Node) limitMembers() *membership.Cluster {
	if rj := n.rejoining.Load(); rj != nil && rj.settled(n.cfg.Name, n.lastMembers.Load(), time.Now()) {
		if n.rejoining.CompareAndSwap(rj, nil) {
			n.lastMembers.Store(rj.mc)
			n.log.Info("the rings follow the membership started after the failed hand-off", "ring", rj.mc.Ring().Len())
		}
	}
	return n.lastMembers.Load()
}

// rejoin is a membership started after a failed hand-off, not yet
// followed by the rings (limitMembers).
type rejoin struct {
	mc    *membership.Cluster
	since time.Time
}

// rejoinWait bounds how long the rings keep the released membership's
// ring after a failed hand-off when the new one sees no other member: a
// node whose peers all went away meanwhile, or one without seeds that the
// others find again only at their next push-pull (30 s on a LAN), follows
// it then.
const rejoinWait = 30 * time.Second

// followMembers makes mc, whose gossip just started, the membership the
// rings follow: at once on the first start, or when the last one's ring
// held no other node; after a failed hand-off, once mc has rejoined
// (settled).
func (n *Node) followMembers(mc *membership.Cluster) {
	last := n.lastMembers.Load()
	if last == nil || last == mc || !hasOther(last.Ring(), n.cfg.Name) {
		n.rejoining.Store(nil)
		n.lastMembers.Store(mc)
		return
	}
	n.rejoining.Store(&rejoin{mc: mc, since: time.Now()})
}

// settled reports whether the rings may follow rj's membership at now:
// its ring holds a node other than self (it joined the others again), or
// the released one's (last) no longer does, or rejoinWait passed.
func (rj *rejoin) settled(self string, last *membership.Cluster, now time.Time) bool {
	return hasOther(rj.mc.Ring(), self) || last == nil || !hasOther(last.Ring(), self) || now.Sub(rj.since) >= rejoinWait
}

// hasOther reports whether r holds a node other than self.
func hasOther(r *membership.Ring, self string) bool {
	if r == nil {
		return false
	}
	n := r.Len()
	if r.Addr(self) != "" {
		n--
	}
	return n > 0
}

// memberPeers finds a node's cluster address in the ring snapshot, which
// holds only the nodes that answer calls.
type memberPeers struct{ n *Node }

var _ ratelimit.Peers = memberPeers{}

func (p memberPeers) Addr(id string) (string, bool) {
	mc := p.n.limitMembers()
	if mc == nil {
		return "", false
	}
	addr := mc.Ring().Addr(id)
	return addr, addr != ""
}

// stopLimits hands the counters this node owns to their next owners
// (when it is leaving gracefully), then stops the sync loop.
func (n *Node) stopLimits(graceful bool) {
	if graceful {
		n.limits.l.Drain()
	}
	n.limits.l.Close()
	n.limits.client.Close()
}

// handOverLimits, in a process that handed the node's cluster port to a
// successor, sends the successor the rate-limit counters this process
// owns, so that it continues their counts instead of granting each key
// its limit again (the ring keeps the node's name, so nothing else moves
// them). It dials the node's advertised cluster address, which the
// successor serves now.
// predecessorLimitsWait bounds how long a successor grants no rate-limit
// tokens while it waits for the old process's counters
// (ratelimit.Limiter.AwaitPredecessor): they come as the old process
// starts draining, milliseconds after this one serves.
const predecessorLimitsWait = 2 * time.Second

func (n *Node) handOverLimits() {
	addr := n.RPCAddr()
	if addr == "" {
		return
	}
	addr = n.adv.Cluster(addr)
	if err := n.limits.l.HandOver(addr); err != nil {
		n.log.Warn("ratelimit: handing the counters to the successor failed; it rebuilds them from the other nodes' reports", "addr", addr, "err", err)
	}
}

// applyLimits installs the rules of c; counters of unchanged rules stay.
func (n *Node) applyLimits(c *config.Cluster) error {
	return n.limits.l.SetRules(limitRules(c.RateLimits))
}

// limitRules translates the cluster config's rate_limits.
func limitRules(in []config.RateLimit) []ratelimit.Rule {
	out := make([]ratelimit.Rule, 0, len(in))
	for _, r := range in {
		out = append(out, r.Rule())
	}
	return out
}

// limitHook is the proxy's Limiter: it hands the session's request to the
// rate limiter and its decision back.
type limitHook struct{ l *ratelimit.Limiter }

var (
	_ proxy.Limiter       = limitHook{}
	_ proxy.LimiterActive = limitHook{}
)

// Active skips the hook, and its span, while the config has no rules.
func (h limitHook) Active() bool { return h.l.Active() }

func (h limitHook) Limit(s *proxy.Session, prev *proxy.LimitDecision) proxy.LimitDecision {
	// The path as rules match it: "/api%2Flogin" meets a rule for
	// "/api/login", which an origin that decodes "%2F" serves.
	r := ratelimit.Request{Route: s.Route, Host: s.Req.Host, Method: s.Req.Method, Path: route.MatchPath(s.Req.Path()),
		RawQuery: s.Req.Query(), ClientIP: s.RealIP(), Header: s.Req.Header}
	var resume int
	var waited time.Duration
	if prev != nil {
		resume, waited = prev.Resume, prev.Waited
	}
	d := h.l.Decide(&r, resume, waited)
	return proxy.LimitDecision{Deny: !d.Allow, Wait: d.Wait, Resume: d.Resume, RetryAfter: d.RetryAfter, Policy: d.Policy, State: d.State}
}

// LimitsStatus returns the rate-limit rules as /status shows them.
func (n *Node) LimitsStatus() ratelimit.Status { return n.limits.l.Status(topKeys) }

// limitsCollector exports the limiter's counters on every scrape.
type limitsCollector struct{ l *ratelimit.Limiter }

var (
	descDecisions  = prometheus.NewDesc("pingora_ratelimit_decisions_total", "Rate-limit decisions by rule and outcome (allowed, denied, delayed: held by on_exceed delay, then counted as allowed or denied too).", []string{"rule", "outcome"}, nil)
	descFallback   = prometheus.NewDesc("pingora_ratelimit_fallback_decisions_total", "Decisions of a global rule made by the local share (limit / live nodes) while the key's owner was out of reach.", []string{"rule"}, nil)
	descUntracked  = prometheus.NewDesc("pingora_ratelimit_untracked_decisions_total", "Decisions for keys past the per-rule key limit, made by the local share over a sketch.", []string{"rule"}, nil)
	descKeys       = prometheus.NewDesc("pingora_ratelimit_keys_tracked", "Keys this node tracks per rule: as a user of the key (side=user) and as its owner (side=owner).", []string{"rule", "side"}, nil)
	descFallbacks  = prometheus.NewDesc("pingora_ratelimit_fallbacks_total", "Keys that went to the local share because their owner could not be reached or refused them.", nil, nil)
	descBatches    = prometheus.NewDesc("pingora_ratelimit_sync_batches_total", "Sync calls sent to other owners.", nil, nil)
	descSyncKeys   = prometheus.NewDesc("pingora_ratelimit_sync_keys_total", "Key lines in the sync calls sent.", nil, nil)
	descSyncErrors = prometheus.NewDesc("pingora_ratelimit_sync_errors_total", "Sync calls that failed (timeout, peer gone).", nil, nil)
	descLatency    = prometheus.NewDesc("pingora_ratelimit_sync_latency_seconds", "Round-trip time of sync calls.", nil, nil)
	descHandoffs   = prometheus.NewDesc("pingora_ratelimit_handoffs_total", "Counters moved on ring changes (direction out: given to a new owner; in: taken).", []string{"direction"}, nil)
	descHandoffErr = prometheus.NewDesc("pingora_ratelimit_handoff_errors_total", "Hand-off calls that failed (the counters stay and are offered again).", nil, nil)
	descMalformed  = prometheus.NewDesc("pingora_ratelimit_malformed_total", "Sync or hand-off bodies received that did not decode.", nil, nil)
)

func (limitsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDecisions, descFallback, descUntracked, descKeys, descFallbacks, descBatches,
		descSyncKeys, descSyncErrors, descLatency, descHandoffs, descHandoffErr, descMalformed} {
		ch <- d
	}
}

func (c limitsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.l.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, r := range s.Rules {
		counter(descDecisions, r.Allowed, r.Name, "allowed")
		counter(descDecisions, r.Denied, r.Name, "denied")
		counter(descDecisions, r.Delayed, r.Name, "delayed")
		counter(descFallback, r.Fallback, r.Name)
		counter(descUntracked, r.Untracked, r.Name)
		ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(r.Keys), r.Name, "user")
		ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(r.Owned), r.Name, "owner")
	}
	counter(descFallbacks, s.Fallbacks)
	counter(descBatches, s.SyncBatches)
	counter(descSyncKeys, s.SyncKeys)
	counter(descSyncErrors, s.SyncErrors)
	counter(descHandoffs, s.HandoffsOut, "out")
	counter(descHandoffs, s.HandoffsIn, "in")
	counter(descHandoffErr, s.HandoffErrors)
	counter(descMalformed, s.Malformed)
	buckets := make(map[float64]uint64, len(ratelimit.LatencyBuckets))
	var total uint64
	for i, b := range ratelimit.LatencyBuckets {
		total += s.LatencyCounts[i]
		buckets[b.Seconds()] = total
	}
	total += s.LatencyCounts[len(ratelimit.LatencyBuckets)]
	ch <- prometheus.MustNewConstHistogram(descLatency, total, s.LatencySum.Seconds(), buckets)
}

// A global rule's busiest keys are what its requests carry: with key
// "header:x-api-key" or "cookie:session", clients' credentials. /status
// and /v1/cluster are read without the admin token (Prometheus, probes,
// the cluster page), by whoever reaches the admin port, so they show each
// such key in full only to a request that could also write (the admin
// token, or loopback when none is set: authorize); to others as
// "redacted:" and a digest, the same for a key as long as the node runs
// (an HMAC under a key of the process, so a guessable key such as a
// client IP cannot be found from it), and different on each node.

// redactKeys replaces the busiest keys' values in st (in copies: st's
// slices may be shared).
func (n *Node) redactKeys(st *Status) {
	if st.RateLimits == nil {
		return
	}
	rl := *st.RateLimits
	rl.Rules = slices.Clone(rl.Rules)
	for i := range rl.Rules {
		top := slices.Clone(rl.Rules[i].Top)
		for j := range top {
			top[j].Key = n.keyDigest(top[j].Key)
		}
		rl.Rules[i].Top = top
	}
	st.RateLimits = &rl
}

// keyDigest is a key's redacted form.
func (n *Node) keyDigest(key string) string {
	if strings.HasPrefix(key, redactedPrefix) {
		return key // a member's, redacted already
	}
	m := hmac.New(sha256.New, n.redactSecret[:])
	m.Write([]byte(key))
	return redactedPrefix + hex.EncodeToString(m.Sum(nil)[:6])
}

const redactedPrefix = "redacted:"
