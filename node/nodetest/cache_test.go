package nodetest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/nodetest"
)

// cacheHost is the Host of the test's requests: every node makes the
// same cache key of a path.
const cacheHost = "shop.test"

// getCached sends GET path with Host cacheHost through nd's proxy.
func getCached(t *testing.T, nd *nodetest.Node, path string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, nd.Proxy()+path, nil)
	req.Host = cacheHost
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s through %s: %v", path, nd.Name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s through %s: %d %s", path, nd.Name, resp.StatusCode, b)
	}
	return string(b)
}

// purge runs POST /v1/cache/purge of urls on nd and returns its answer.
func purge(t *testing.T, nd *nodetest.Node, urls ...string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, nd.Admin()+"/v1/cache/purge",
		strings.NewReader(fmt.Sprintf(`{"urls": ["%s"]}`, strings.Join(urls, `", "`))))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("purge on %s: %d %s", nd.Name, resp.StatusCode, b)
	}
	return string(b)
}

// ownerHolding returns the node whose local tier holds objects, after a
// request for one new path: the path's owner.
func ownerHolding(c *nodetest.Cluster, before map[string]int) *nodetest.Node {
	for _, nd := range c.Nodes() {
		if nd.Node().Status().Cache.Detail.Local.Objects > before[nd.Name] {
			return nd
		}
	}
	return nil
}

func localObjects(c *nodetest.Cluster) map[string]int {
	out := map[string]int{}
	for _, nd := range c.Nodes() {
		out[nd.Name] = nd.Node().Status().Cache.Detail.Local.Objects
	}
	return out
}

// cacheRingsAgree reports whether every node's cache uses one ring of
// all of them.
func cacheRingsAgree(nodes ...*nodetest.Node) bool {
	var v uint64
	for i, nd := range nodes {
		d := nd.Node().Status().Cache.Detail
		if d.RingMembers != len(nodes) || (i > 0 && d.RingVersion != v) {
			return false
		}
		v = d.RingVersion
	}
	return true
}

// TestPurgeAcrossPartition: three real nodes share a cache. The owner of
// /a is cut off from the other two (gossip and cluster port); a purge of
// /a runs on the two, and a purge of /b (another node's, of which the
// cut-off node holds a hot copy) runs on the cut-off node; the origin
// changes. After the heal every node serves the origin's new version of
// both: the returning owner does not serve /a as it held it, and the two
// do not serve /b. Before the purge log, /a came back as v1 from its
// owner.
func TestPurgeAcrossPartition(t *testing.T) {
	var version atomic.Int64
	version.Store(1)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		fmt.Fprintf(w, "%s v%d", r.URL.Path, version.Load())
	}))
	t.Cleanup(origin.Close)
	c := nodetest.Start(t, nodetest.Config{ClusterConfig: nodetest.Route(origin.Listener.Addr().String()) +
		"    cache: {enabled: true, shared: true}\n"})
	c.WaitFor("every cache on the full ring", 10*time.Second, func() bool { return cacheRingsAgree(c.Nodes()...) })

	before := localObjects(c)
	for _, nd := range c.Nodes() {
		getCached(t, nd, "/a")
	}
	lone := ownerHolding(c, before)
	if lone == nil {
		t.Fatal("no node holds /a")
	}
	var rest []*nodetest.Node
	for _, nd := range c.Nodes() {
		if nd != lone {
			rest = append(rest, nd)
		}
	}
	// /b: a path another node owns; the lone node holds a hot copy.
	var pathB string
	for i := 0; pathB == ""; i++ {
		p := fmt.Sprintf("/b%d", i)
		before = localObjects(c)
		getCached(t, lone, p)
		getCached(t, lone, p) // asked twice: the hot tier keeps it
		if o := ownerHolding(c, before); o != nil && o != lone {
			pathB = p
		}
	}

	c.Faults.Partition(nodetest.Names(rest...), []string{lone.Name})
	c.Logf("partition: %v | %s (owner of /a)", nodetest.Names(rest...), lone.Name)
	c.WaitFor("the two's rings without "+lone.Name, 30*time.Second, func() bool {
		_, _, ok := nodetest.Agreed(rest...)
		return ok && cacheRingsAgree(rest...)
	})
	c.WaitFor(lone.Name+" alone on its ring", 30*time.Second, func() bool { return cacheRingsAgree(lone) })
	c.Logf("purge of /a on %s: %s", rest[0].Name, purge(t, rest[0], "http://"+cacheHost+"/a"))
	c.Logf("purge of %s on %s: %s", pathB, lone.Name, purge(t, lone, "http://"+cacheHost+pathB))
	version.Store(2)

	c.Faults.Heal()
	took := c.WaitFor("every cache on the full ring after the heal", healDeadline, func() bool {
		_, _, ok := c.Agreed()
		return ok && cacheRingsAgree(c.Nodes()...)
	})
	c.Logf("healed: caches on one ring after %s", took)
	for _, nd := range append(rest, lone) {
		for _, p := range []string{"/a", pathB} {
			if got, want := getCached(t, nd, p), p+" v2"; got != want {
				t.Fatalf("GET %s through %s after the heal: %q, want %q (a purge was undone)", p, nd.Name, got, want)
			}
		}
	}
	for _, nd := range c.Nodes() {
		d := nd.Node().Status().Cache.Detail
		c.Logf("%s: purge log %d, replayed %d, syncs %v", nd.Name, d.PurgeLog, d.PurgesReplayed, d.PurgeSyncs)
	}
}
