package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/handoff"
)

// cacheOrigin is an origin whose responses may be stored for five
// minutes, tagged, with a body that names the path; it counts requests by
// path, and answers slowly enough that concurrent misses overlap.
type cacheOrigin struct {
	srv   *httptest.Server
	total atomic.Int64
	mu    sync.Mutex
	paths map[string]int
}

func newCacheOrigin(t *testing.T, size int) *cacheOrigin {
	o := &cacheOrigin{paths: map[string]int{}}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.total.Add(1)
		o.mu.Lock()
		o.paths[r.URL.Path]++
		o.mu.Unlock()
		time.Sleep(50 * time.Millisecond) // sleep-ok: a slow origin, so that concurrent misses overlap
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Surrogate-Key", "all "+strings.Trim(r.URL.Path, "/"))
		w.Write(cacheBody(r.URL.Path, size))
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func cacheBody(path string, size int) []byte {
	return bytes.Repeat([]byte(path+";"), size/(len(path)+1)+1)[:size]
}

// startCacheCluster starts nodes that gossip and cache a shared route in
// front of upstream, and waits until every node's cache has the ring of
// all of them with their cluster addresses.
func startCacheCluster(t *testing.T, upstream string, names ...string) []*Node {
	t.Helper()
	cluster := clusterFor(upstream) + "    cache: {enabled: true, shared: true}\n"
	var nodes []*Node
	for i, name := range names {
		extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\ncluster_addr: 127.0.0.1:0\nupgrade_socket: %s\n", filepath.Join(t.TempDir(), "up.sock"))
		if i > 0 {
			extra += fmt.Sprintf("join: [%q]\n", nodes[0].Members().Addr())
		}
		nodes = append(nodes, startNode(t, writeNodeFiles(t, name, extra, cluster)))
	}
	waitUntil(t, "every cache on the full ring", func() bool {
		for _, n := range nodes {
			if !cacheRingReady(n, len(names)) {
				return false
			}
		}
		return true
	})
	return nodes
}

func cacheRingReady(n *Node, members int) bool {
	r := n.Members().Ring()
	return r.Len() == members && n.cache.ringVersion() == newCacheRing(r).Version()
}

// TestSharedCacheFillsOnce: concurrent requests for one cold key spread
// over three nodes reach the origin once and every client gets the whole
// body; the owner holds the object, the others hot copies; /status and
// /v1/cache/stats report the cache; a purge by tag on one node reaches
// all three and the next request goes to the origin again.
func TestSharedCacheFillsOnce(t *testing.T) {
	// An owner slower than the default second, as on a loaded CI machine,
	// would let the other nodes fall back to the origin: this test is
	// about collapsing, not about that timeout (sharedcache's
	// TestOwnerPartitioned is).
	old := cacheOwnerTimeout.Swap(int64(10 * time.Second))
	t.Cleanup(func() { cacheOwnerTimeout.Store(old) })
	const size = 64 << 10
	o := newCacheOrigin(t, size)
	nodes := startCacheCluster(t, o.srv.Listener.Addr().String(), "c1", "c2", "c3")
	const clients = 300
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	bad := fetchConcurrently(hc, nodes, "/obj", clients, cacheBody("/obj", size))
	if bad != 0 || o.total.Load() != 1 {
		for _, n := range nodes {
			st := n.cache.c.Stats()
			t.Logf("%s: fallbacks %d, call errors %d, not owner %d, origin fills %d, ring mismatch %d",
				n.cfg.Name, st.Fallbacks, st.CallErrors, st.NotOwner, st.OriginFills, st.RingMismatch)
		}
		t.Fatalf("%d bad responses, %d origin requests (want 0 and 1)", bad, o.total.Load())
	}
	var objects int
	for _, n := range nodes {
		objects += n.Status().Cache.Detail.Local.Objects
	}
	if objects != 1 {
		t.Fatalf("%d owned objects across the nodes, want 1", objects)
	}
	_, body := get(t, "http://"+nodes[1].AdminAddr()+"/v1/cache/stats")
	if !strings.Contains(body, `"node": "c1"`) || !strings.Contains(body, `"node": "c3"`) {
		t.Fatalf("/v1/cache/stats: %s", body)
	}
	code, body := send(t, "POST", "http://"+nodes[2].AdminAddr()+"/v1/cache/purge", `{"tags": ["obj"]}`, nil)
	var res PurgeResult
	if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil || len(res.Nodes) != 3 || res.Dropped < 1 {
		t.Fatalf("purge: %d %s", code, body)
	}
	for _, np := range res.Nodes {
		if np.Error != "" {
			t.Fatalf("purge on %s: %s", np.Node, np.Error)
		}
	}
	req, _ := http.NewRequest("GET", "http://"+nodes[0].ListenerAddrs()["http"]+"/obj", nil)
	req.Host = "cache.test"
	if resp, err := hc.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if o.total.Load() != 2 {
		t.Fatalf("after the purge the origin saw %d requests, want 2", o.total.Load())
	}
	if code, body := send(t, "POST", "http://"+nodes[0].AdminAddr()+"/v1/cache/purge", `{"urls": ["/no-host"]}`, nil); code != 400 || !strings.Contains(body, "urls[0]") {
		t.Fatalf("bad purge: %d %s", code, body)
	}
}

// fetchConcurrently sends n requests for path at once, spread over nodes,
// with the host cache.test, and returns how many did not get want whole.
func fetchConcurrently(hc *http.Client, nodes []*Node, path string, n int, want []byte) int64 {
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := range n {
		url := "http://" + nodes[i%len(nodes)].ListenerAddrs()["http"] + path
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", url, nil)
			req.Host = "cache.test" // one key on every node (the key has the host)
			resp, err := hc.Do(req)
			if err != nil {
				bad.Add(1)
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(b, want) {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	return bad.Load()
}

// TestSharedIsLive: turning cache.shared off on a route (a reload) makes
// each node cache that route's objects itself; turning it on again puts
// them back in the cluster tier, with no restart.
func TestSharedIsLive(t *testing.T) {
	o := newCacheOrigin(t, 1<<10)
	nodes := startCacheCluster(t, o.srv.Listener.Addr().String(), "s1", "s2")
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	fetchAll := func(path string) {
		t.Helper()
		if bad := fetchConcurrently(hc, nodes, path, 2, cacheBody(path, 1<<10)); bad != 0 {
			t.Fatalf("%d bad responses for %s", bad, path)
		}
	}
	reload := func(shared bool) {
		t.Helper()
		doc := clusterFor(o.srv.Listener.Addr().String()) + fmt.Sprintf("    cache: {enabled: true, shared: %v}\n", shared)
		for _, n := range nodes {
			if err := os.WriteFile(*n.clusterPath.Load(), []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := n.Reload(); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		shared *bool
		path   string
		origin int64 // origin requests for the path, both nodes asked
	}{
		{nil, "/a", 1},        // shared: one fill for both
		{ptr(false), "/b", 2}, // each node fills its own
		{ptr(true), "/c", 1},  // shared again
	}
	for _, st := range steps {
		if st.shared != nil {
			reload(*st.shared)
		}
		fetchAll(st.path)
		fetchAll(st.path)
		o.mu.Lock()
		got := int64(o.paths[st.path])
		o.mu.Unlock()
		if got != st.origin {
			t.Fatalf("%s: %d origin requests, want %d", st.path, got, st.origin)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestSharedPrivateReason: on a shared route, a private response reports
// detail=private in Cache-Status on every node, the key's owner (which
// fetched it for the cluster) and the others, which get the reason from
// the owner in the wire head frame; before it, they said fill-failed.
// Each request is the first for its path (the owner marks a path it
// filled for hit-for-pass), three paths a node, so that most are asked
// of another node.
func TestSharedPrivateReason(t *testing.T) {
	old := cacheOwnerTimeout.Swap(int64(10 * time.Second)) // as TestSharedCacheFillsOnce: no fallback on a loaded machine
	t.Cleanup(func() { cacheOwnerTimeout.Store(old) })
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=60")
		io.WriteString(w, "yours")
	}))
	t.Cleanup(origin.Close)
	nodes := startCacheCluster(t, origin.Listener.Addr().String(), "p1", "p2", "p3")
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	for _, n := range nodes {
		for i := range 3 {
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/%s/%d", n.ListenerAddrs()["http"], n.cfg.Name, i), nil)
			req.Host = "cache.test"
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "detail=private") {
				t.Fatalf("%s, path %d: Cache-Status %q, want detail=private", n.cfg.Name, i, cs)
			}
		}
	}
}

// TestCacheFollowsRingAfterFailedHandOff: a hand-off that fails gives
// this process its gossip back (lifecycle.reopen), and the shared cache
// follows the new membership's ring again. Before, its ring loop ended
// with the released membership and nothing started it again: the cache
// kept the ring of the moment of the release for as long as the process
// ran, and a node that joined later owned none of its keys here.
func TestCacheFollowsRingAfterFailedHandOff(t *testing.T) {
	up := origin(t, "a")
	n1 := startClusterNode(t, "n1", up)
	startClusterNode(t, "n2", up, n1.Members().Addr())
	cacheRing := func() int {
		n1.cache.mu.Lock()
		defer n1.cache.mu.Unlock()
		if n1.cache.last == nil {
			return 0
		}
		return n1.cache.last.Len()
	}
	waitUntil(t, "n1's cache on a ring of 2", func() bool { return cacheRing() == 2 })
	if err := n1.OfferHandoff(); err != nil {
		t.Fatal(err)
	}
	in, err := handoff.Request(n1.cfg.UpgradeSocketPath(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Fail(errors.New("test over")) // no-op once failed below
	if err := in.Release(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	in.Fail(errors.New("successor gave up"))
	waitUntil(t, "gossip back on n1", func() bool { return n1.Members() != nil })
	n3 := startClusterNode(t, "n3", up, n1.Members().Addr())
	waitUntil(t, "n3 in n1's ring", func() bool { return n1.Members().Ring().Addr("n3") == n3.RPCAddr() })
	waitUntil(t, "n3 in n1's cache ring", func() bool {
		n1.cache.mu.Lock()
		defer n1.cache.mu.Unlock()
		return n1.cache.last != nil && n1.cache.last.Addr("n3") == n3.RPCAddr()
	})
}

// TestCacheRingOutlivesGossip: once this process's gossip has stopped (an
// upgrade hands the node's identity to its successor, then drains), the
// cache keeps the last ring, as the rate limiter does
// (TestLimitRingOutlivesGossip): a ring of itself alone would make the
// draining process the owner of every key and fill the others' keys from
// the origin into a cache about to vanish. A guard: the ring loop ends
// with the membership's subscription and leaves the ring as it was
// (chaos/cache-transitions.sh saw no origin fetch from a draining old
// process).
func TestCacheRingOutlivesGossip(t *testing.T) {
	up := origin(t, "a")
	n1 := startClusterNode(t, "n1", up)
	startClusterNode(t, "n2", up, n1.Members().Addr())
	waitUntil(t, "a cache ring of 2 on n1", func() bool { return n1.cache.c.Stats().RingMembers == 2 })
	n1.leaveCluster(false) // as lifecycle.release does for an upgrade
	n1.cache.mu.Lock()
	done := n1.cache.done
	n1.cache.mu.Unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the cache's ring loop did not end with the membership")
	}
	if got := n1.cache.c.Stats().RingMembers; got != 2 {
		t.Fatalf("n1's cache ring after its gossip stopped has %d members, want the last one, of 2", got)
	}
}
