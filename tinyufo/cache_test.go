package tinyufo

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func newCache(t testing.TB, capacity int64) *Cache[string] {
	t.Helper()
	c, err := New[string](Config{Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkInvariants walks the queues, the index and the tag index and fails
// on any disagreement between them and the counters.
func checkInvariants(t *testing.T, c *Cache[string]) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var n, w int64
	for _, q := range []*fifo[string]{&c.small, &c.main} {
		var qw int64
		for e := q.head; e != nil; e = e.next {
			if e.inMain != (q == &c.main) {
				t.Errorf("%q: inMain %v in the wrong queue", e.key, e.inMain)
			}
			if h := c.hash(e.key); c.shard(h).m[h] != e {
				t.Errorf("%q is queued but not indexed", e.key)
			}
			qw += e.weight
			n++
		}
		if qw != q.weight {
			t.Errorf("queue weight %d, entries sum to %d", q.weight, qw)
		}
		w += qw
	}
	indexed := 0
	for i := range c.shards {
		indexed += len(c.shards[i].m)
	}
	if int64(indexed) != n || c.len.Load() != n {
		t.Errorf("queued %d, indexed %d, Len %d", n, indexed, c.len.Load())
	}
	if c.weight.Load() != w || w > c.cap {
		t.Errorf("Weight %d, queues hold %d, Cap %d", c.weight.Load(), w, c.cap)
	}
	for tag, set := range c.tags {
		for e := range set {
			if h := c.hash(e.key); c.shard(h).m[h] != e {
				t.Errorf("tag %q holds %q, which is not cached", tag, e.key)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"zero is defaults", Config{}, ""},
		{"defaults", DefaultConfig(), ""},
		{"tiny", Config{Capacity: 1, EstimatedEntries: 1}, ""},
		{"negative capacity", Config{Capacity: -1}, "Capacity"},
		{"negative entries", Config{EstimatedEntries: -1}, "EstimatedEntries"},
		{"huge entries", Config{EstimatedEntries: 1<<28 + 1}, "EstimatedEntries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			_, nerr := New[int](tc.cfg)
			if tc.field == "" {
				if err != nil || nerr != nil {
					t.Fatalf("Validate = %v, New = %v", err, nerr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) || nerr == nil {
				t.Fatalf("Validate = %v, New = %v; want errors naming %s", err, nerr, tc.field)
			}
		})
	}
}

func TestPutGetRemove(t *testing.T) {
	t.Parallel()
	type op struct {
		do     string // put, get, remove, force
		key    string
		val    string
		weight int64
		want   bool   // put: admitted; get: found; remove: was cached
		wantV  string // get
	}
	tests := []struct {
		name       string
		capacity   int64
		ops        []op
		wantLen    int
		wantWeight int64
	}{
		{"put then get", 100, []op{
			{do: "put", key: "a", val: "1", weight: 10, want: true},
			{do: "get", key: "a", want: true, wantV: "1"},
			{do: "get", key: "b", want: false},
		}, 1, 10},
		{"replace keeps one entry with the new weight", 100, []op{
			{do: "put", key: "a", val: "1", weight: 10, want: true},
			{do: "put", key: "a", val: "2", weight: 30, want: true},
			{do: "get", key: "a", want: true, wantV: "2"},
		}, 1, 30},
		{"too heavy is rejected", 100, []op{
			{do: "put", key: "a", val: "1", weight: 101, want: false},
			{do: "get", key: "a", want: false},
		}, 0, 0},
		{"weight below 1 counts as 1", 100, []op{
			{do: "put", key: "a", val: "1", weight: 0, want: true},
			{do: "put", key: "b", val: "1", weight: -5, want: true},
		}, 2, 2},
		{"remove", 100, []op{
			{do: "put", key: "a", val: "1", weight: 10, want: true},
			{do: "remove", key: "a", want: true},
			{do: "remove", key: "a", want: false},
			{do: "get", key: "a", want: false},
		}, 0, 0},
		{"eviction keeps the weight under the cap", 25, []op{
			{do: "put", key: "a", val: "1", weight: 10, want: true},
			{do: "put", key: "b", val: "1", weight: 10, want: true},
			{do: "force", key: "c", val: "1", weight: 10, want: true},
			{do: "get", key: "c", want: true, wantV: "1"},
		}, 2, 20},
		{"a fresh key loses to a more popular victim", 2, []op{
			{do: "put", key: "hot", val: "1", weight: 1, want: true},
			{do: "put", key: "hot", val: "1", weight: 1, want: true},
			{do: "put", key: "hot", val: "1", weight: 1, want: true},
			{do: "put", key: "x", val: "1", weight: 1, want: true},
			// hot (3 uses) moves to main; x (freq 1) makes way for y (freq 1)
			{do: "put", key: "y", val: "1", weight: 1, want: true},
			{do: "get", key: "x", want: false},
			{do: "put", key: "y", val: "2", weight: 1, want: true}, // y's freq is now 2
			// the victim would be y (freq 2 > z's 1): z is rejected, y stays
			{do: "put", key: "z", val: "1", weight: 1, want: false},
			{do: "get", key: "y", want: true, wantV: "2"},
			{do: "get", key: "hot", want: true, wantV: "1"},
			// forcing skips the check
			{do: "force", key: "z", val: "1", weight: 1, want: true},
			{do: "get", key: "z", want: true, wantV: "1"},
		}, 2, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, tc.capacity)
			for i, o := range tc.ops {
				var got bool
				switch o.do {
				case "put":
					got = c.Put(o.key, o.val, o.weight)
				case "force":
					got = c.PutWith(o.key, o.val, o.weight, PutOptions{Force: true})
				case "remove":
					got = c.Remove(o.key)
				case "get":
					var v string
					v, got = c.Get(o.key)
					if got && v != o.wantV {
						t.Errorf("op %d: Get(%q) = %q, want %q", i, o.key, v, o.wantV)
					}
				}
				if got != o.want {
					t.Errorf("op %d: %s(%q) = %v, want %v", i, o.do, o.key, got, o.want)
				}
			}
			if c.Len() != tc.wantLen || c.Weight() != tc.wantWeight {
				t.Errorf("Len %d Weight %d, want %d %d", c.Len(), c.Weight(), tc.wantLen, tc.wantWeight)
			}
			checkInvariants(t, c)
		})
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	c := newCache(t, 3)
	for _, k := range []string{"a", "b", "c", "d"} {
		c.Put(k, k, 1)
	}
	c.Put("big", "x", 4) // too heavy: a rejection
	c.Get("d")
	c.Get("nope")
	st := c.Stats()
	want := Stats{Len: 3, Weight: 3, Capacity: 3, Hits: 1, Misses: 1, Evictions: 1, Rejections: 1}
	if st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if c.Cap() != 3 {
		t.Errorf("Cap = %d", c.Cap())
	}
	if !c.Contains("d") || c.Contains("nope") {
		t.Error("Contains disagrees with the content")
	}
	if c.Stats().Hits != 1 {
		t.Error("Contains counted an access")
	}
}

// TestScanResistance is why the cache admits: a hot set survives a scan of
// ten times the capacity of one-hit keys, which would flush an LRU.
func TestScanResistance(t *testing.T) {
	t.Parallel()
	c := newCache(t, 100)
	for range 5 {
		for i := range 50 {
			k := "hot/" + strconv.Itoa(i)
			if _, ok := c.Get(k); !ok {
				c.Put(k, k, 1)
			}
		}
	}
	for i := range 1000 {
		k := "scan/" + strconv.Itoa(i)
		if _, ok := c.Get(k); !ok {
			c.Put(k, k, 1)
		}
	}
	kept := 0
	for i := range 50 {
		if c.Contains("hot/" + strconv.Itoa(i)) {
			kept++
		}
	}
	if kept < 45 {
		t.Errorf("%d of 50 hot keys survived the scan, want at least 45", kept)
	}
	checkInvariants(t, c)
}

func TestPurge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		purge func(c *Cache[string]) int
		want  int
		left  []string
	}{
		{"tag", func(c *Cache[string]) int { return c.RemoveTag("product-7") }, 2, []string{"/a/1", "/b/1", "/b/2"}},
		{"unknown tag", func(c *Cache[string]) int { return c.RemoveTag("nope") }, 0, []string{"/a/1", "/a/2", "/a/3", "/b/1", "/b/2"}},
		{"prefix", func(c *Cache[string]) int { return c.RemovePrefix("/a/") }, 3, []string{"/b/1", "/b/2"}},
		{"func", func(c *Cache[string]) int {
			return c.RemoveFunc(func(_ string, v string) bool { return v == "v2" })
		}, 2, []string{"/a/1", "/a/3", "/b/1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, 1000)
			put := func(k, v string, tags ...string) {
				if !c.PutWith(k, v, 10, PutOptions{Tags: tags}) {
					t.Fatalf("Put(%q) rejected", k)
				}
			}
			put("/a/1", "v1", "site")
			put("/a/2", "v2", "site", "product-7")
			put("/a/3", "v3", "product-7")
			put("/b/1", "v1")
			put("/b/2", "v2")
			if got := tc.purge(c); got != tc.want {
				t.Errorf("removed %d, want %d", got, tc.want)
			}
			var left []string
			c.Range(func(k, _ string, w int64) bool {
				left = append(left, k)
				return true
			})
			if strings.Join(sorted(left), " ") != strings.Join(tc.left, " ") {
				t.Errorf("left %v, want %v", sorted(left), tc.left)
			}
			checkInvariants(t, c)
		})
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestTagIndexFollowsEviction checks that evicted and replaced entries
// leave the tag index, so it cannot grow without the cache.
func TestTagIndexFollowsEviction(t *testing.T) {
	t.Parallel()
	c := newCache(t, 10)
	for i := range 100 {
		k := "/obj/" + strconv.Itoa(i)
		c.PutWith(k, "v", 1, PutOptions{Tags: []string{"t" + strconv.Itoa(i), "all"}, Force: true})
	}
	c.PutWith("/obj/99", "v2", 1, PutOptions{Tags: []string{"new"}})
	checkInvariants(t, c)
	c.mu.Lock()
	tags := len(c.tags)
	c.mu.Unlock()
	if tags > 12 { // at most 10 entries' own tags, "all" and "new"
		t.Errorf("tag index holds %d tags for %d entries", tags, c.Len())
	}
	// 10 entries fit; /obj/99 was re-tagged, so 9 carry "all".
	if n := c.RemoveTag("all"); n != 9 || c.Len() != 1 || !c.Contains("/obj/99") {
		t.Errorf("RemoveTag(all) = %d, %d entries left; want 9 and only /obj/99", n, c.Len())
	}
}

// TestRangeStops checks that Range stops when f returns false.
func TestRangeStops(t *testing.T) {
	t.Parallel()
	c := newCache(t, 100)
	for i := range 20 {
		c.Put(strconv.Itoa(i), "v", 1)
	}
	n := 0
	c.Range(func(string, string, int64) bool { n++; return n < 5 })
	if n != 5 {
		t.Errorf("Range visited %d after stopping at 5", n)
	}
}

// TestConcurrent runs Gets, Puts of random weights, Removes and purges
// from several goroutines (run it with -race), then checks that queues,
// index, tag index and counters agree and the weight is within the cap.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	c := newCache(t, 5000)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 20_000 {
				k := "/k/" + strconv.Itoa(r.IntN(2000))
				switch x := r.IntN(100); {
				case x < 60:
					c.Get(k)
				case x < 90:
					c.PutWith(k, k, 1+r.Int64N(50), PutOptions{Tags: []string{k[:4]}})
				case x < 98:
					c.Remove(k)
				case x < 99:
					c.RemovePrefix("/k/1")
				default:
					c.RemoveTag("/k/2")
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, c)
	st := c.Stats()
	if st.Hits+st.Misses == 0 || st.Weight > st.Capacity {
		t.Errorf("Stats after the run: %+v", st)
	}
}
