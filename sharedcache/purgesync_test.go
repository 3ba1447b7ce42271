package sharedcache

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// keysOwnedBy returns n keys (from testKey(from) on) that owner owns on
// the ring of members.
func keysOwnedBy(owner string, from, n int, members ...string) []string {
	var out []string
	for i := from; len(out) < n; i++ {
		if k := testKey(i); ownerOf(k, members...) == owner {
			out = append(out, k)
		}
	}
	return out
}

// cutOff partitions lone from the others and gives each side the ring of
// its own members, as gossip would once it declared the other side dead.
func (h *harness) cutOff(lone string, others ...string) {
	h.faults.Partition(others, []string{lone})
	h.setRing(others...)
	h.setRing(lone)
}

// heal ends the partition and gives every node the ring of all of them.
func (h *harness) heal(all ...string) {
	h.faults.Heal()
	h.setRing(all...)
}

// TestPurgeReachesNodeOutOfRing: a node cut off from the others (out of
// their ring) when a purge runs on them gets it when it comes back,
// before it serves as the keys' owner again: what it stored before the
// purge goes to the origin again, what it filled after the purge stays.
// Before the purge log, it served the purged objects again.
func TestPurgeReachesNodeOutOfRing(t *testing.T) {
	all := []string{"a", "b", "c"}
	h := newHarness(t, Config{}, all...)
	cs := keysOwnedBy("c", 0, 3, all...)
	old, fresh := cs[:2], cs[2]
	for _, k := range old {
		h.get(h.nodes["a"], k) // filled by c, the owner, for a
	}
	h.cutOff("c", "a", "b")
	h.clk.Advance(time.Second)
	res, err := h.nodes["a"].c.PurgeCluster(context.Background(), Purge{Prefixes: []string{"http://origin.test/"}})
	if err != nil || len(res) != 2 {
		t.Fatalf("purge on the majority: %+v %v", res, err)
	}
	h.clk.Advance(2 * purgeClockSlack)
	h.get(h.nodes["c"], fresh) // filled at c after the purge, while cut off
	h.heal(all...)
	for _, k := range old {
		if _, how, err := h.get(h.nodes["b"], k); err != nil || h.origin.count(k) != 2 {
			t.Fatalf("%s, stored at c before the purge: %s %v; origin asked %d times, want 2 (c served the purged object)", k, how, err, h.origin.count(k))
		}
	}
	if _, how, err := h.get(h.nodes["b"], fresh); err != nil || h.origin.count(fresh) != 1 {
		t.Fatalf("%s, filled at c after the purge: %s %v; origin asked %d times, want 1", fresh, how, err, h.origin.count(fresh))
	}
	st := h.nodes["c"].c.Stats()
	if st.PurgesReplayed != 1 || st.PurgeSyncs["ok"] == 0 || st.PurgeLog != 1 {
		t.Fatalf("c's purge figures: replayed %d, syncs %v, log %d", st.PurgesReplayed, st.PurgeSyncs, st.PurgeLog)
	}
}

// TestPurgeOnMinorityReachesMajority: a purge run on the node cut off
// reaches the others when the partition heals: the objects they stored
// before it go.
func TestPurgeOnMinorityReachesMajority(t *testing.T) {
	all := []string{"a", "b", "c"}
	h := newHarness(t, Config{}, all...)
	key := keysOwnedBy("a", 0, 1, all...)[0]
	h.get(h.nodes["b"], key)
	h.cutOff("c", "a", "b")
	h.clk.Advance(time.Second)
	if _, err := h.nodes["c"].c.PurgeCluster(context.Background(), Purge{URLs: []string{"http://origin.test" + strings.TrimPrefix(key, "GET http://origin.test")}}); err != nil {
		t.Fatal(err)
	}
	h.heal(all...)
	if _, how, err := h.get(h.nodes["b"], key); err != nil || h.origin.count(key) != 2 {
		t.Fatalf("after the heal: %s %v; origin asked %d times, want 2 (a served what c purged)", how, err, h.origin.count(key))
	}
}

// TestPurgeReachesPausedNode: a node that never saw itself leave (a
// paused process: its ring did not change) gets the purge from the
// members that see it come back, before they send it requests.
func TestPurgeReachesPausedNode(t *testing.T) {
	all := []string{"a", "b", "c"}
	h := newHarness(t, Config{}, all...)
	h.origin.tags = "all"
	key := keysOwnedBy("c", 0, 1, all...)[0]
	h.get(h.nodes["a"], key)
	h.faults.Partition([]string{"a", "b"}, []string{"c"})
	h.setRing("a", "b") // c's ring stays the full one
	h.clk.Advance(time.Second)
	h.nodes["b"].c.PurgeCluster(context.Background(), Purge{Tags: []string{"all"}})
	h.faults.Heal()
	h.setRing("a", "b") // the same ring: nothing to sync
	for _, n := range []string{"a", "b"} {
		h.nodes[n].c.SetRing(newFakeRing(n, all...))
	}
	if _, how, err := h.get(h.nodes["a"], key); err != nil || h.origin.count(key) != 2 {
		t.Fatalf("after c came back: %s %v; origin asked %d times, want 2", how, err, h.origin.count(key))
	}
}

// TestPurgeLogShortDropsOlder: when the peers' logs no longer reach back
// to when a node left (PurgeLogBytes ran out), the node drops everything
// stored before the oldest purge they still hold, purged or not (cold
// but correct), and keeps what it filled after.
func TestPurgeLogShortDropsOlder(t *testing.T) {
	all := []string{"a", "b", "c"}
	h := newHarness(t, Config{PurgeLogBytes: 200}, all...) // one purge of one URL
	cs := keysOwnedBy("c", 0, 2, all...)
	old, fresh := cs[0], cs[1]
	h.get(h.nodes["a"], old)
	h.cutOff("c", "a", "b")
	for i := range 3 {
		h.clk.Advance(time.Second)
		h.nodes["a"].c.PurgeCluster(context.Background(), Purge{URLs: []string{"http://other.test/" + strings.Repeat("x", i)}})
	}
	h.clk.Advance(2 * purgeClockSlack)
	h.get(h.nodes["c"], fresh)
	h.heal(all...)
	if _, _, err := h.get(h.nodes["b"], old); err != nil || h.origin.count(old) != 2 {
		t.Fatalf("an object stored before the log's horizon was kept: origin asked %d times, want 2", h.origin.count(old))
	}
	if _, _, err := h.get(h.nodes["b"], fresh); err != nil || h.origin.count(fresh) != 1 {
		t.Fatalf("an object filled after the log's horizon was dropped: origin asked %d times, want 1", h.origin.count(fresh))
	}
	if st := h.nodes["c"].c.Stats(); st.PurgeSyncs["short"] == 0 {
		t.Fatalf("no short sync counted: %v", st.PurgeSyncs)
	}
}

// TestPurgeLogShortPausedNode: the same for a node that never saw
// itself leave (its ring did not change): the member that sees it come
// back sends its log's horizon with its purges, and the node drops what
// was requested before it.
func TestPurgeLogShortPausedNode(t *testing.T) {
	all := []string{"a", "b", "c"}
	h := newHarness(t, Config{PurgeLogBytes: 200}, all...)
	old := keysOwnedBy("c", 0, 1, all...)[0]
	h.get(h.nodes["a"], old)
	h.faults.Partition([]string{"a", "b"}, []string{"c"})
	h.setRing("a", "b")
	for i := range 3 {
		h.clk.Advance(time.Second)
		h.nodes["a"].c.PurgeCluster(context.Background(), Purge{URLs: []string{"http://other.test/" + strings.Repeat("x", i)}})
	}
	h.faults.Heal()
	h.nodes["b"].c.SetRing(newFakeRing("b", "a", "b")) // b's log is short too; a alone brings c back
	h.nodes["a"].c.SetRing(newFakeRing("a", all...))
	if o, _ := h.nodes["c"].c.local.Lookup(context.Background(), old); o != nil {
		t.Fatal("c kept an object requested before the horizon of the log it was sent")
	}
	if st := h.nodes["c"].c.Stats(); st.PurgeSyncs["short"] != 1 {
		t.Fatalf("c's syncs: %v", st.PurgeSyncs)
	}
}

// TestPurgeByTagBeforeHead: a purge by surrogate key that runs while a
// fill waits for its origin's head keeps it from storing: the response
// may be what the purge meant to drop (asked for before it), and its tags
// were not known when the purge looked at the fills under way.
func TestPurgeByTagBeforeHead(t *testing.T) {
	h := newHarness(t, Config{}, "a")
	h.origin.tags = "product-42"
	n := h.nodes["a"]
	ctx := context.Background()
	key := testKey(1)
	f, _, err := n.c.local.Lock(ctx, key, 0)
	if f == nil {
		t.Fatal(err)
	}
	if _, err := n.c.PurgeLocal(Purge{Tags: []string{"product-42"}}); err != nil {
		t.Fatal(err)
	}
	h.origin.fill(key, f)
	if o, _ := n.c.local.Lookup(ctx, key); o != nil {
		t.Fatal("a fill whose head came after a purge of its tag was stored")
	}
}

// TestLogEntryCompat: a purge's wire body keeps Purge's fields where a
// node that knows only Purge reads them, and a body without ID or time
// (from such a node) decodes as one.
func TestLogEntryCompat(t *testing.T) {
	e := logEntry{Purge: Purge{URLs: []string{"https://a/x"}, Tags: []string{"t"}}, ID: "n1/1/1", At: 7}
	b, err := msgpack.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	var old Purge
	if err := msgpack.Unmarshal(b, &old); err != nil || old.URLs[0] != "https://a/x" || old.Tags[0] != "t" {
		t.Fatalf("as Purge: %+v %v", old, err)
	}
	b, _ = msgpack.Marshal(&Purge{Prefixes: []string{"a/"}})
	var got logEntry
	if err := msgpack.Unmarshal(b, &got); err != nil || got.Prefixes[0] != "a/" || got.ID != "" {
		t.Fatalf("from Purge: %+v %v", got, err)
	}
}

// TestPurgeLogBounds: the log drops its oldest purges beyond its bytes
// and age, and its horizon says how far back it is complete.
func TestPurgeLogBounds(t *testing.T) {
	t.Parallel()
	var l purgeLog
	now := time.Unix(1000, 0)
	entry := func(id string, at time.Time) logEntry {
		return logEntry{Purge: Purge{URLs: []string{"https://a/" + id}}, ID: id, At: at.UnixNano()}
	}
	for i, id := range []string{"p1", "p2", "p3"} {
		if !l.add(entry(id, now.Add(time.Duration(i)*time.Second)), now, 1<<20, time.Hour) {
			t.Fatalf("%s refused", id)
		}
	}
	if l.add(entry("p2", now), now, 1<<20, time.Hour) {
		t.Fatal("a purge logged twice")
	}
	if es, h := l.since(now.Add(time.Second).UnixNano()); len(es) != 2 || h != 0 {
		t.Fatalf("since 1s: %d entries, horizon %d", len(es), h)
	}
	l.add(entry("p4", now.Add(2*time.Hour)), now.Add(2*time.Hour), 1<<20, time.Hour) // p1..p3 too old
	if n, h := l.size(); n != 1 || h != now.Add(2*time.Second).UnixNano() {
		t.Fatalf("after aging: %d entries, horizon %v", n, time.Unix(0, h))
	}
	one := entry("p5", now.Add(2*time.Hour))
	l.add(one, now.Add(2*time.Hour), one.weight(), time.Hour) // room for one
	if n, _ := l.size(); n != 1 || !l.has("p5") || l.has("p4") {
		t.Fatalf("after the bytes ran out: %d entries", n)
	}
}

// TestLateMatch: purges applied late select objects requested before
// they ran, by URL (with its variants), prefix and tag, the latest purge
// of each counting; a fill still waiting for its head is selected when
// it may hold what they select.
func TestLateMatch(t *testing.T) {
	t.Parallel()
	at := func(s int) time.Time { return time.Unix(int64(s), 0).Add(-purgeClockSlack) } // as purges widen them
	lm := newLateMatch(0)
	for _, p := range []struct {
		p  Purge
		at int
	}{
		{Purge{URLs: []string{"http://a.test/x"}}, 100},
		{Purge{URLs: []string{"http://a.test/x"}}, 200},
		{Purge{Prefixes: []string{"http://a.test/img/"}}, 100},
		{Purge{Tags: []string{"t"}}, 100},
	} {
		m, err := p.p.compile()
		if err != nil {
			t.Fatal(err)
		}
		lm.add(m, at(p.at).UnixNano())
	}
	meta := func(rt int, tags string) *cache.Meta {
		h := http.Header{}
		if tags != "" {
			h.Set("Surrogate-Key", tags)
		}
		return &cache.Meta{Header: h, RequestTime: at(rt)}
	}
	for _, c := range []struct {
		key  string
		meta *cache.Meta
		want bool
	}{
		{"GET http://a.test/x", meta(150, ""), true}, // the later purge of /x counts
		{"GET http://a.test/x\x00vary\x00g\x00br", meta(199, ""), true},
		{"GET http://a.test/x", meta(201, ""), false},
		{"GET http://a.test/xy", meta(1, ""), false},
		{"GET http://a.test/img/1.png", meta(99, ""), true},
		{"GET http://a.test/img/1.png", meta(101, ""), false},
		{"GET http://b.test/", meta(99, "u t"), true},
		{"GET http://b.test/", meta(101, "u t"), false},
		{"GET http://b.test/", meta(1, "u"), false},
		{"GET http://b.test/", nil, true}, // headless, and a tag purge
	} {
		if got := lm.fill(c.key, c.meta); got != c.want {
			t.Errorf("fill(%q, %v) = %v, want %v", c.key, c.meta, got, c.want)
		}
	}
	if none := newLateMatch(0); none.fill("GET http://b.test/", nil) {
		t.Error("no purge selects a headless fill")
	}
	if cut := newLateMatch(time.Unix(50, 0).UnixNano()); !cut.fill("GET http://z.test/", meta(48, "")) || cut.fill("GET http://z.test/", meta(52, "")) {
		t.Error("the cut of a short log")
	}
}

// TestPurgeRetriedToUnreachableMember: a member in the ring that a purge
// could not reach (listed with an error in the answer) gets it later
// from the purging node's log, by RetryPurgeSync, without a ring change.
func TestPurgeRetriedToUnreachableMember(t *testing.T) {
	all := []string{"a", "b", "c"}
	h := newHarness(t, Config{}, all...)
	key := keysOwnedBy("c", 0, 1, all...)[0]
	h.get(h.nodes["c"], key)
	h.nw.SetDown("c", true)
	h.clk.Advance(time.Second)
	res, _ := h.nodes["a"].c.PurgeCluster(context.Background(), Purge{Prefixes: []string{"http://origin.test/"}})
	if res[len(res)-1].Node != "c" || res[len(res)-1].Error == "" {
		t.Fatalf("c reached while down: %+v", res)
	}
	h.nodes["a"].c.RetryPurgeSync() // still down: fails, kept
	h.nw.SetDown("c", false)
	h.nodes["a"].c.RetryPurgeSync()
	if o, _ := h.nodes["c"].c.local.Lookup(context.Background(), key); o != nil {
		t.Fatal("c kept an object the purge it missed selects")
	}
	if st := h.nodes["a"].c.Stats(); st.PurgeSyncs["error"] == 0 || st.PurgeSyncs["ok"] == 0 {
		t.Fatalf("a's syncs: %v", st.PurgeSyncs)
	}
}

// TestPurgeSyncRefusesBadLogs: a purge log exchange from a peer (or
// anyone on the cluster port) whose entries lack an ID, hold a selector a
// purge would refuse, or weigh more than a log may, is refused with the
// reason, and applies nothing: the stored object stays.
func TestPurgeSyncRefusesBadLogs(t *testing.T) {
	h := newHarness(t, Config{}, "a")
	k := keysOwnedBy("a", 0, 1, "a")[0]
	h.get(h.nodes["a"], k)
	huge := make([]string, 0, 3)
	for range 3 {
		huge = append(huge, "http://origin.test/"+strings.Repeat("x", 3<<20))
	}
	for name, es := range map[string][]logEntry{
		"no ID":        {{Purge: Purge{URLs: []string{"http://origin.test/"}}, At: 1}},
		"bad selector": {{Purge: Purge{URLs: []string{"not a url"}}, ID: "x/1/1", At: 1}},
		"too heavy":    {{Purge: Purge{Prefixes: huge}, ID: "x/1/2", At: 1}},
	} {
		if _, err := h.nodes["a"].c.servePurgeSync(context.Background(), &syncRequest{Entries: es}); err == nil {
			t.Errorf("%s: exchange accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, how, err := h.get(h.nodes["a"], k); err != nil || h.origin.count(k) != 1 {
		t.Fatalf("%s after the refused exchanges: %s %v; origin asked %d times, want 1", k, how, err, h.origin.count(k))
	}
	if st := h.nodes["a"].c.Stats(); st.PurgesReplayed != 0 {
		t.Fatalf("purges replayed: %d", st.PurgesReplayed)
	}
}
