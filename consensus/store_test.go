package consensus

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBootstrapRandomOrder(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := newCluster(t, size, size, nil)
			rng := rand.New(rand.NewPCG(uint64(size), uint64(time.Now().UnixNano())))
			// Each node learns of the others one at a time, in its own random order,
			// and the nodes are told in a random order too.
			known := make([][]Server, size)
			all := c.servers()
			for i := range known {
				known[i] = []Server{all[i]}
			}
			for len(known[0]) < size || slices.ContainsFunc(known, func(k []Server) bool { return len(k) < size }) {
				i := rng.IntN(size)
				if len(known[i]) == size {
					continue
				}
				var missing []Server
				for _, sv := range all {
					if !slices.ContainsFunc(known[i], func(k Server) bool { return k.ID == sv.ID }) {
						missing = append(missing, sv)
					}
				}
				known[i] = append(known[i], missing[rng.IntN(len(missing))])
				view := slices.Clone(known[i])
				rng.Shuffle(len(view), func(a, b int) { view[a], view[b] = view[b], view[a] })
				c.nodes[i].s.Reconcile(view)
			}
			took := time.Now()
			l := c.leader(20 * time.Second)
			t.Logf("%d nodes: leader %s elected %s after the last Reconcile", size, l.id, time.Since(took))
			var boots []string
			for _, n := range c.nodes {
				if n.s.Bootstrapped() {
					boots = append(boots, n.id)
				}
			}
			if len(boots) != 1 || boots[0] != "n1" {
				t.Fatalf("bootstrapped by %v, want exactly [n1]", boots)
			}
			v, nv := voters(l)
			if len(v) != size || len(nv) != 0 {
				t.Fatalf("voters %v nonvoters %v, want %d voters", v, nv, size)
			}
			if _, err := l.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("x"), -1); err != nil {
				t.Fatalf("Put: %v", err)
			}
		})
	}
}

func TestSingleNodeBootstrapsAtOnce(t *testing.T) {
	n := newNode(t, "solo", t.TempDir(), 1, nil)
	c := &cluster{t: t, nodes: []*tnode{n}, down: map[string]bool{}, left: map[string]bool{}}
	c.leader(10 * time.Second) // no Reconcile call needed
	d, err := n.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("v1"), 0)
	if err != nil || d.Version != 1 || d.Node != "solo" {
		t.Fatalf("Put = %+v, %v", d, err)
	}
}

func TestNoBootstrapNextToExistingState(t *testing.T) {
	if got := chooseBootstrap([]Server{{ID: "a", Addr: "x", Alive: true}, {ID: "b", Addr: "y", Alive: true, HasState: true}}, 2); got != nil {
		t.Fatalf("chooseBootstrap with a stateful server = %v, want nil", got)
	}
	got := chooseBootstrap([]Server{{ID: "c", Addr: "z", Alive: true}, {ID: "b", Addr: "y", Alive: true},
		{ID: "a", Addr: "x", Alive: false}, {ID: "d", Addr: "w", Alive: true}}, 2)
	if len(got) != 2 || got[0].ID != "b" || got[1].ID != "c" {
		t.Fatalf("chooseBootstrap = %v, want [b c]", got)
	}
}

func TestFailover(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := newCluster(t, size, size, nil)
			c.reconcile()
			l := c.put("cfg", []byte("before"))
			start := time.Now()
			c.kill(l)
			var took time.Duration
			var w *tnode // the new leader that took the write
			waitFor(t, 15*time.Second, "a write on a new leader", func() bool {
				for _, n := range c.live() {
					// Conditional on version 1: an attempt that gave up
					// (its second ran out, or its leader stepped down)
					// may still commit, and the next one then finds
					// version 2, "after", in place instead of writing
					// it a second time.
					_, err := n.s.Put(ctxT(t, time.Second), "cfg", []byte("after"), 1)
					var ce *ConflictError
					if err == nil || errors.As(err, &ce) && ce.Current == 2 {
						took, w = time.Since(start), n
						return true
					}
				}
				return false
			})
			nl := c.leader(10 * time.Second)
			t.Logf("%d nodes: old leader %s killed; new leader %s took the write; leader now %s; first successful write after %s",
				size, l.id, w.id, nl.id, took)
			// The server that took the write has applied it (Put returns
			// once the leader applied it; a conflict is decided by its
			// FSM); the leader now may be another one, not there yet.
			d, ok := w.s.Get("cfg")
			if !ok || string(d.Content) != "after" || d.Version != 2 {
				t.Fatalf("Get = %+v, %v", d, ok)
			}
		})
	}
}

func TestWrites(t *testing.T) {
	c := newCluster(t, 3, 3, func(cfg *Config) {
		cfg.ValidateDoc = func(name string, content []byte) error {
			if string(content) == "bad" {
				return errors.New("routes[0].upstream: missing")
			}
			return nil
		}
	})
	c.reconcile()
	l := c.leader(20 * time.Second)
	f := c.follower(l)

	t.Run("follower refuses with leader", func(t *testing.T) {
		_, err := f.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("x"), -1)
		var nle *NotLeaderError
		if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nle) || nle.LeaderID != l.id || nle.LeaderAddr != l.s.Addr() {
			t.Fatalf("follower Put err = %v, want NotLeaderError naming %s at %s", err, l.id, l.s.Addr())
		}
		if _, _, err := f.s.GetConsistent(ctxT(t, 5*time.Second), "cfg"); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("follower GetConsistent err = %v", err)
		}
		if _, _, err := f.s.GetCurrent(ctxT(t, 5*time.Second), "cfg"); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("follower GetCurrent err = %v", err)
		}
	})
	t.Run("GetCurrent appends nothing", func(t *testing.T) {
		// A new leader writes the cluster ID (a barrier and an entry) on
		// its own; wait for it, so that no entry but ours moves the index.
		waitFor(t, 10*time.Second, "the cluster ID written", func() bool { return l.s.ClusterID() != "" })
		d1, err := l.s.Put(ctxT(t, 5*time.Second), "cur", []byte("a"), -1)
		if err != nil {
			t.Fatal(err)
		}
		before := l.s.Status().LastIndex
		d, ok, err := l.s.GetCurrent(ctxT(t, 5*time.Second), "cur")
		if err != nil || !ok || d.Version != d1.Version || string(d.Content) != "a" {
			t.Fatalf("GetCurrent = %+v %v %v", d, ok, err)
		}
		if after := l.s.Status().LastIndex; after != before {
			t.Fatalf("GetCurrent moved the last index from %d to %d", before, after)
		}
		if _, _, err := l.s.GetConsistent(ctxT(t, 5*time.Second), "cur"); err != nil {
			t.Fatal(err)
		}
		if after := l.s.Status().LastIndex; after != before+1 {
			t.Fatalf("GetConsistent: last index %d, want the barrier at %d", after, before+1)
		}
	})
	t.Run("CAS", func(t *testing.T) {
		start := time.Now()
		d1, err := l.s.Put(ctxT(t, 5*time.Second), "cas", []byte("a"), 0)
		if err != nil || d1.Version != 1 {
			t.Fatalf("create = %+v, %v", d1, err)
		}
		t.Logf("first write latency (3 nodes, commit + apply on leader): %s", time.Since(start))
		d2, err := l.s.Put(ctxT(t, 5*time.Second), "cas", []byte("b"), 1)
		if err != nil || d2.Version != 2 {
			t.Fatalf("cas 1 = %+v, %v", d2, err)
		}
		_, err = l.s.Put(ctxT(t, 5*time.Second), "cas", []byte("c"), 1)
		var ce *ConflictError
		if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) || ce.Current != 2 {
			t.Fatalf("stale cas err = %v, want conflict with current 2", err)
		}
		if _, err := l.s.Put(ctxT(t, 5*time.Second), "cas", []byte("d"), 0); !errors.Is(err, ErrConflict) {
			t.Fatalf("create over existing err = %v", err)
		}
		d, ok, err := l.s.GetConsistent(ctxT(t, 5*time.Second), "cas")
		if err != nil || !ok || string(d.Content) != "b" {
			t.Fatalf("GetConsistent = %+v %v %v", d, ok, err)
		}
		waitFor(t, 5*time.Second, "followers apply version 2", func() bool {
			d, _ := f.s.Get("cas")
			return d.Version == 2
		})
		if h := f.s.History("cas"); len(h) != 2 || string(h[0].Content) != "a" {
			t.Fatalf("History = %+v", h)
		}
	})
	t.Run("latency", func(t *testing.T) {
		var lat, prop []time.Duration
		for i := range 50 {
			start := time.Now()
			d, err := l.s.Put(ctxT(t, 5*time.Second), "lat", []byte{byte(i)}, -1)
			if err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			var last time.Time
			waitFor(t, 5*time.Second, "OnApply on every node", func() bool {
				for _, n := range c.nodes {
					at, ok := n.appliedTime(d.Index)
					if !ok {
						return false
					}
					if at.After(last) {
						last = at
					}
				}
				return true
			})
			prop = append(prop, last.Sub(start))
		}
		slices.Sort(lat)
		slices.Sort(prop)
		t.Logf("write latency over 50 sequential Puts on a 3-node leader: p50 %s p90 %s max %s", lat[25], lat[45], lat[49])
		t.Logf("Put call to OnApply on all 3 nodes: p50 %s p90 %s max %s", prop[25], prop[45], prop[49])
	})
	t.Run("invalid refused, nothing replicated", func(t *testing.T) {
		waitFor(t, 5*time.Second, "all logs level", func() bool {
			for _, n := range c.nodes {
				if n.s.Status().LastIndex != l.s.Status().LastIndex {
					return false
				}
			}
			return true
		})
		before := make([]uint64, len(c.nodes))
		for i, n := range c.nodes {
			before[i] = n.s.Status().LastIndex
		}
		_, err := l.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("bad"), -1)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "routes[0].upstream") {
			t.Fatalf("err = %v, want ErrInvalid with the reason", err)
		}
		if _, err := l.s.Put(ctxT(t, 5*time.Second), "", []byte("x"), -1); !errors.Is(err, ErrInvalid) {
			t.Fatalf("empty name err = %v", err)
		}
		if _, err := l.s.Put(ctxT(t, 5*time.Second), "big", make([]byte, 2<<20), -1); !errors.Is(err, ErrInvalid) {
			t.Fatalf("oversize err = %v", err)
		}
		for i, n := range c.nodes {
			if got := n.s.Status().LastIndex; got != before[i] {
				t.Fatalf("%s last index %d -> %d: something was proposed", n.id, before[i], got)
			}
		}
	})
}

func TestIsolatedFollowerCannotWrite(t *testing.T) {
	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	l := c.put("cfg", []byte("v1"))
	f := c.follower(l)
	waitFor(t, 5*time.Second, "follower applies v1", func() bool { _, ok := f.s.Get("cfg"); return ok })
	for _, n := range c.live() {
		if n != f {
			c.kill(n)
		}
	}
	// Until its heartbeat timeout the follower still names the old leader
	// (node's forward then fails); after it, writes fail with ErrNoQuorum.
	took := waitFor(t, f.cfg.Timing.ApplyTimeout+2*time.Second, "ErrNoQuorum on the isolated follower", func() bool {
		_, err := f.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("v2"), -1)
		return errors.Is(err, ErrNoQuorum)
	})
	t.Logf("isolated follower refuses writes with ErrNoQuorum %s after isolation", took)
	if d, ok := f.s.Get("cfg"); !ok || string(d.Content) != "v1" {
		t.Fatalf("Get = %+v %v, want v1", d, ok)
	}
}

func TestMinorityCannotWrite(t *testing.T) {
	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	l := c.put("cfg", []byte("v1"))
	// Isolate the leader: the other two go away.
	for _, n := range c.live() {
		if n != l {
			c.kill(n)
		}
	}
	start := time.Now()
	_, err := l.s.Put(ctxT(t, 30*time.Second), "cfg", []byte("v2"), -1)
	took := time.Since(start)
	if !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("isolated Put err = %v, want ErrNoQuorum", err)
	}
	if bound := l.cfg.Timing.ApplyTimeout + time.Second; took > bound {
		t.Fatalf("ErrNoQuorum after %s, want within %s", took, bound)
	}
	t.Logf("isolated leader: ErrNoQuorum after %s (%v)", took, err)
	// Later writes fail fast too, and reads keep serving the last document.
	start = time.Now()
	if _, err := l.s.Put(ctxT(t, 30*time.Second), "cfg", []byte("v3"), -1); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("second Put err = %v", err)
	}
	t.Logf("second write refused after %s", time.Since(start))
	if d, ok := l.s.Get("cfg"); !ok || string(d.Content) != "v1" {
		t.Fatalf("Get = %+v %v, want v1", d, ok)
	}
}
