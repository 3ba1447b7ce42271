package node

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func clusterViewOf(t *testing.T, admin string) ClusterView {
	t.Helper()
	code, body := get(t, "http://"+admin+"/v1/cluster")
	var v ClusterView
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil {
		t.Fatalf("/v1/cluster: %d %s", code, body)
	}
	return v
}

// TestClusterView: /v1/cluster on one node carries every member with its
// own /status, fetched by the serving node; a dead member is listed from
// gossip with why it was not asked.
func TestClusterView(t *testing.T) {
	up := origin(t, "a")
	n1 := startClusterNode(t, "n1", up)
	seed := n1.Members().Addr()
	n2 := startClusterNode(t, "n2", up, seed)
	n3 := startClusterNode(t, "n3", up, seed)
	waitUntil(t, "three members, each with its status", func() bool {
		v := clusterViewOf(t, n1.AdminAddr())
		if len(v.Members) != 3 {
			return false
		}
		for _, m := range v.Members {
			if m.Status == nil || m.Status.Node.Name != m.Name || m.Status.Traffic == nil {
				return false
			}
		}
		return v.Node == "n1" && v.Members[0].Self && !v.Members[1].Self
	})
	n3.leaveCluster(false) // crash-like: gossip stops without a leave
	waitUntil(t, "n3 dead, not asked", func() bool {
		for _, m := range clusterViewOf(t, n2.AdminAddr()).Members {
			if m.Name == "n3" {
				return m.State == "dead" && m.Status == nil && strings.Contains(m.Error, "the member is dead")
			}
		}
		return false
	})
}

// TestClusterViewStandalone: a node that does not gossip shows itself.
func TestClusterViewStandalone(t *testing.T) {
	n := startNode(t, writeFiles(t, clusterFor(origin(t, "a"))))
	v := clusterViewOf(t, n.AdminAddr())
	if len(v.Members) != 1 || !v.Members[0].Self || v.Members[0].Status == nil || v.Members[0].Name != "test-node" || v.Members[0].RingShare != 1 {
		t.Fatalf("standalone view %+v", v)
	}
}

// TestUIServed: the page and its files come from the binary with a
// strict Content-Security-Policy, and read like /status: no token needed
// even when one is set for writes (which still need it).
func TestUIServed(t *testing.T) {
	n := startNode(t, writeNodeFiles(t, "n", "admin_token: s3cret\n", clusterFor(origin(t, "a"))))
	for path, want := range map[string]string{"/ui": "text/html", "/ui/app.js": "text/javascript", "/ui/style.css": "text/css"} {
		resp, err := http.Get("http://" + n.AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), want) {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Fatalf("%s: CSP %q", path, csp)
		}
	}
	if code, body := get(t, "http://"+n.AdminAddr()+"/v1/cluster"); code != 200 || !strings.Contains(body, `"members"`) {
		t.Fatalf("/v1/cluster without a token: %d %s", code, body)
	}
	if code, _ := post(t, "http://"+n.AdminAddr()+"/v1/upstreams/web/peers/x/disable", ""); code != 401 {
		t.Fatalf("a write without the token: %d, want 401", code)
	}
}

// TestFetchStatusOnlyAsksStatus: a member's admin address comes from its
// gossip, so /v1/cluster asks it for /status only: an address with a path
// or query is not asked at all, and a redirect is not followed. Before,
// "host:port/latest/meta-data/x?" made the node GET that path and follow
// the server's redirect wherever it led.
func TestFetchStatusOnlyAsksStatus(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var paths []string
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, "target "+r.URL.RequestURI())
		mu.Unlock()
		writeJSON(w, 200, Status{Node: NodeStatus{Name: "target"}})
	}))
	t.Cleanup(target.Close)
	member := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.RequestURI())
		mu.Unlock()
		if r.URL.Path == "/status" && r.URL.RawQuery == "" {
			writeJSON(w, 200, Status{Node: NodeStatus{Name: "m"}})
			return
		}
		http.Redirect(w, r, target.URL+"/status", http.StatusFound)
	}))
	t.Cleanup(member.Close)
	host := member.Listener.Addr().String()
	ctx, client := context.Background(), newStatusClient()
	if st, e := fetchStatus(ctx, client, host); st == nil || st.Node.Name != "m" {
		t.Fatalf("a plain address: %v %q", st, e)
	}
	for _, addr := range []string{host + "/latest/meta-data/x?y=", host + "?redirect=", "user@" + host, host + "#x", "127.0.0.1:0", "127.0.0.1:http"} {
		if st, e := fetchStatus(ctx, client, addr); st != nil || !strings.HasPrefix(e, "not asked") {
			t.Errorf("%q: %v %q, want not asked", addr, st, e)
		}
	}
	mu.Lock()
	got := strings.Join(paths, ", ")
	mu.Unlock()
	if got != "/status" {
		t.Fatalf("requests: %s; want /status only", got)
	}
	// A member whose /status redirects is not followed.
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/status", http.StatusFound)
	}))
	t.Cleanup(redirecting.Close)
	if st, e := fetchStatus(ctx, client, redirecting.Listener.Addr().String()); st != nil || !strings.Contains(e, "302") {
		t.Fatalf("a redirect: %v %q, want it answered 302", st, e)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(strings.Join(paths, ", "), "target") {
		t.Fatalf("the redirect was followed: %v", paths)
	}
}

// TestClusterViewCoalesced: clients asking /v1/cluster at once share one
// gathering of the members' /status, and one that asks just after gets
// its view: before, each request asked every member, so clients could
// multiply the requests to the other members' admin ports at will.
func TestClusterViewCoalesced(t *testing.T) {
	up := origin(t, "a")
	n1 := startClusterNode(t, "n1", up)
	startClusterNode(t, "n2", up, n1.Members().Addr())
	waitUntil(t, "n1 sees n2 with its status", func() bool {
		for _, m := range clusterViewOf(t, n1.AdminAddr()).Members {
			if m.Name == "n2" && m.Status != nil {
				return true
			}
		}
		return false
	})
	var fetches atomic.Int32
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // a failed wait must not leave the fetch blocked
	n1.views.mu.Lock()
	n1.views.fetch = func(ctx context.Context, addr string) (*Status, string) {
		fetches.Add(1)
		<-release
		return fetchStatus(ctx, newStatusClient(), addr)
	}
	n1.views.at = time.Time{} // the next request gathers
	n1.views.mu.Unlock()

	const clients = 20
	var wg sync.WaitGroup
	views := make([]ClusterView, clients)
	errs := make([]error, clients)
	for i := range clients {
		wg.Add(1)
		go func() { // no t.Fatal off the test's goroutine
			defer wg.Done()
			resp, err := http.Get("http://" + n1.AdminAddr() + "/v1/cluster")
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			errs[i] = json.NewDecoder(resp.Body).Decode(&views[i])
		}()
	}
	waitUntil(t, "one gathering, every other client waiting for it", func() bool {
		n1.views.mu.Lock()
		defer n1.views.mu.Unlock()
		return fetches.Load() == 1 && n1.views.waiters == clients-1
	})
	releaseOnce()
	wg.Wait()
	for i, v := range views {
		if errs[i] != nil || len(v.Members) != 2 || v.Members[1].Status == nil {
			t.Fatalf("client %d: %v %+v", i, errs[i], v)
		}
	}
	if got := fetches.Load(); got != 1 {
		t.Fatalf("%d fetches of n2's status for %d clients at once, want 1", got, clients)
	}
}
