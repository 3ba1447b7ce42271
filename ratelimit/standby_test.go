package ratelimit

import (
	"sync/atomic"
	"testing"
	"time"
)

// standbyRing is withoutSelf as an upgrade's old process sees the ring
// while its successor stalls (the node's limitRing).
type standbyRing struct{ withoutSelf }

func (standbyRing) Standby() bool { return true }

var _ StandbyRing = standbyRing{}

// TestStandbyKeepsCounters: the owner of a key of a 1,000-a-minute limit
// is upgraded; its successor stalls after the release, so for a while the
// old process's ring leaves the node out (a StandbyRing), while the other
// nodes' rings, which have not declared it dead, stay whole; then the
// successor serves, and the old process hands it its counters (HandOver).
// The period admits the limit once. Before, the old process dropped the
// counters once the next node took them (which did not own them and
// passed them to no one), the successor got none, and the key admitted
// 1,000 more in the same minute. A stall long enough for the others to
// take the node off their rings meanwhile admits the limit once too.
func TestStandbyKeepsCounters(t *testing.T) {
	for _, declaredDead := range []bool{false, true} {
		ids := []string{"a", "b", "c"}
		rules := []Rule{{Name: "api", Key: "header:x-api-key", Limit: 1000, Period: time.Minute, Scope: Global}}
		c := newSimCluster(t, Config{}, rules, ids...)
		victim := c.owner("api", "k1")
		old := c.nodes[victim]
		var standby atomic.Bool
		old.l.cfg.Ring = func() Ring {
			if r := old.ring.Load(); standby.Load() {
				return standbyRing{withoutSelf{r: r, self: victim}}
			} else {
				return r
			}
		}
		var total int64
		count := func(secs []int64) {
			for _, s := range secs {
				total += s
			}
		}
		count(c.drive(3*time.Second, 3000, "k1", ids, nil))
		standby.Store(true) // the release, and a probe interval without the successor
		count(c.drive(time.Second, 3000, "k1", ids, nil))
		if declaredDead { // a longer stall: the others took the node off their rings
			for _, id := range without(ids, victim) {
				c.nodes[id].ring.Store(&hrwRing{self: id, nodes: without(ids, victim)})
			}
			count(c.drive(3*time.Second, 3000, "k1", ids, nil))
		}
		standby.Store(false) // the successor serves
		c.upgrade(victim, rules)
		if declaredDead { // and joins again
			c.setRing(ids...)
		}
		count(c.drive(5*time.Second, 3000, "k1", ids, nil))
		if got := old.l.Stats().HandoffsOut; got == 0 {
			t.Fatal("the old process handed nothing to the next node while it stood by")
		}
		if total > 1100 {
			t.Fatalf("declared dead %v: the key admitted %d in one minute, limit 1000", declaredDead, total)
		}
	}
}
