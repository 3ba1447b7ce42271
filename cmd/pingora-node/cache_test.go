package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// cacheHost is the Host of every cached request: the key has the host, so
// one host makes one key on every node.
const cacheHost = "cache.test"

// cacheCluster is node processes that gossip and cache one shared route.
type cacheCluster struct {
	t     *testing.T
	dir   string
	seed  string
	procs []*proc
}

func newCacheCluster(t *testing.T, upstream string, n int) *cacheCluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "pcc") // short: it holds Unix sockets
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(fmt.Sprintf(
		"upstreams:\n  - name: web\n    peers: [{addr: %s}]\nroutes:\n  - upstream: web\n    cache: {enabled: true, shared: true}\n", upstream)), 0o644)
	cc := &cacheCluster{t: t, dir: dir}
	for range n {
		cc.add()
	}
	cc.waitRing(cc.procs)
	return cc
}

// add starts one more node, joining the first.
func (cc *cacheCluster) add() *proc {
	t := cc.t
	p := &proc{name: fmt.Sprintf("n%d", len(cc.procs)+1), admin: freePort(t), proxy: freePort(t)}
	gossip := freePort(t)
	body := fmt.Sprintf("name: %s\nadmin_addr: %s\nlisteners:\n  - {name: http, addr: %s}\ncluster_config: cluster.yaml\n"+
		"gossip_addr: %s\ngossip_profile: fast\ncluster_addr: %s\nupgrade_socket: %s.sock\ngrace_period: 5s\n",
		p.name, p.admin, p.proxy, gossip, freePort(t), p.name)
	if cc.seed != "" {
		body += "join: [" + cc.seed + "]\n"
	} else {
		cc.seed = gossip
	}
	p.nodeFile = filepath.Join(cc.dir, p.name+".yaml")
	os.WriteFile(p.nodeFile, []byte(body), 0o644)
	p.start(t)
	cc.procs = append(cc.procs, p)
	return p
}

// waitRing waits until every proc's cache places keys on a ring of
// exactly procs, all with the same version.
func (cc *cacheCluster) waitRing(procs []*proc) {
	cc.t.Helper()
	waitFor(cc.t, fmt.Sprintf("%d caches on one ring of %d", len(procs), len(procs)), func() bool {
		var v uint64
		for _, p := range procs {
			st, err := p.status()
			if err != nil || st.Cache == nil || st.Cache.Detail.RingMembers != len(procs) || v != 0 && st.Cache.Detail.RingVersion != v {
				return false
			}
			v = st.Cache.Detail.RingVersion
		}
		return v != 0
	})
}

// cacheGet fetches path through p with the cache host.
func cacheGet(c *http.Client, p *proc, path string) ([]byte, int, error) {
	req, _ := http.NewRequest("GET", "http://"+p.proxy+path, nil)
	req.Host = cacheHost
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// TestRealCacheCommands: "cache stats" lists every node's cache and
// "cache purge" drops an object on every node and says how many each
// dropped; a purge that selects nothing is a usage error.
func TestRealCacheCommands(t *testing.T) {
	var hits atomic.Int64
	up := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Cache-Tag", "page")
		io.WriteString(w, "cached "+r.URL.Path)
	})
	cc := newCacheCluster(t, up, 3)
	c := &http.Client{Timeout: 10 * time.Second}
	for _, p := range cc.procs {
		if b, code, err := cacheGet(c, p, "/page"); err != nil || code != 200 || string(b) != "cached /page" {
			t.Fatalf("%s: %d %q %v", p.name, code, b, err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("origin hit %d times for one key on three nodes", hits.Load())
	}
	code, out, errs := cli("cache", "stats", cc.procs[0].admin)
	if code != 0 || strings.Count(out, "\nn") != 3 || !strings.Contains(out, "HIT RATIO") {
		t.Fatalf("cache stats: %d\n%s%s", code, out, errs)
	}
	code, out, errs = cli("cache", "purge", "--tag", "page", "--admin", cc.procs[1].admin)
	if code != 0 || !strings.Contains(out, "total: dropped ") || !strings.Contains(out, " on 3 nodes") {
		t.Fatalf("cache purge: %d\n%s%s", code, out, errs)
	}
	cacheGet(c, cc.procs[2], "/page")
	if hits.Load() != 2 {
		t.Fatalf("after the purge the origin saw %d requests, want 2", hits.Load())
	}
	if code, _, errs := cli("cache", "purge", "--admin", cc.procs[0].admin); code != 2 || !strings.Contains(errs, "selects nothing") {
		t.Fatalf("empty purge: %d %q", code, errs)
	}
}

// TestRealCacheOwnerKilledMidStream (issue 14, proof 4): the owner of a
// large object is killed (SIGKILL) while it streams the object to another
// node's client. The client gets an error, never a short body that reads
// as complete; no node keeps a partial object; the next request gets the
// whole object.
func TestRealCacheOwnerKilledMidStream(t *testing.T) {
	const size = 8 << 20
	o, cc := gatedCluster(t, size, true)
	big, gate := o.big, &o.gate
	client := cc.procs[0]
	c := &http.Client{Timeout: 30 * time.Second}
	var read atomic.Int64
	owner, path, owned, res, g := streamFromOwner(t, cc, c, o, &read)
	owner.cmd.Process.Kill()
	owner.cmd.Wait()
	err := <-res
	if err == nil {
		t.Fatal("the client read the whole body from an owner killed half-way")
	}
	t.Logf("client of %s, owner %s killed after %d of %d bytes: %v", client.name, owner.name, read.Load(), size, err)
	gate.Store(nil)
	close(g)
	for _, p := range cc.procs {
		if p == owner {
			continue
		}
		st, err := p.status()
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if p == client {
			want = owned
		}
		if d := st.Cache.Detail; d.Hot.Objects != 0 || d.Local.Objects != want {
			t.Fatalf("%s keeps %d hot and %d local objects after the cut (want 0 and %d)", p.name, d.Hot.Objects, d.Local.Objects, want)
		}
	}
	waitFor(t, "the whole object again", func() bool {
		b, code, err := cacheGet(c, client, path)
		return err == nil && code == 200 && bytes.Equal(b, big)
	})
}

// TestRealCacheOwnerKilledMidFillChunked: as above, but the origin sends
// no Content-Length, so the owner streams a fill of unknown length and
// the client's response is chunked: a kill of the owner half-way must
// reach the client as a broken response, never as a short chunked body
// ended cleanly (it did: the last chunk followed the first half).
func TestRealCacheOwnerKilledMidFillChunked(t *testing.T) {
	const size = 4 << 20
	o, cc := gatedCluster(t, size, false)
	gate := &o.gate
	c := &http.Client{Timeout: 30 * time.Second}
	var read atomic.Int64
	owner, _, _, res, g := streamFromOwner(t, cc, c, o, &read)
	owner.cmd.Process.Kill()
	owner.cmd.Wait()
	err := <-res
	gate.Store(nil)
	close(g)
	if err == nil {
		t.Fatal("the client read the whole body from an owner killed half-way")
	}
	if !strings.Contains(err.Error(), "unexpected EOF") && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the client read a short body as complete: %v", err)
	}
}

// gatedOrigin serves big, holding each response half-way while gate is
// set (and saying so on halfway).
type gatedOrigin struct {
	big     []byte
	gate    atomic.Pointer[chan struct{}]
	halfway chan string
}

// gatedCluster starts a gatedOrigin of size bytes (cacheable for 5
// minutes, with Content-Length when withLength, else of unknown length)
// and a cluster of 3 nodes in front of it.
func gatedCluster(t *testing.T, size int, withLength bool) (*gatedOrigin, *cacheCluster) {
	t.Helper()
	o := &gatedOrigin{big: bytes.Repeat([]byte("0123456789abcdef"), size/16), halfway: make(chan string, 16)} // one per gated response
	up := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		if withLength {
			w.Header().Set("Content-Length", fmt.Sprint(size))
		}
		w.Write(o.big[:size/2])
		w.(http.Flusher).Flush()
		if g := o.gate.Load(); g != nil {
			o.halfway <- r.URL.Path
			<-*g
		}
		w.Write(o.big[size/2:])
	})
	return o, newCacheCluster(t, up, 3)
}

// streamFromOwner requests /big/N at n1, each with the origin gated
// half-way, until one is owned by another node, which is then streaming
// it to n1's client; it returns that owner, the path, how many keys n1
// owned (stored whole there), the request's result channel and the gate.
func streamFromOwner(t *testing.T, cc *cacheCluster, c *http.Client, o *gatedOrigin, read *atomic.Int64) (*proc, string, int, chan error, chan struct{}) {
	client, gate, big := cc.procs[0], &o.gate, o.big
	for i := range 20 {
		g := make(chan struct{})
		gate.Store(&g)
		path := fmt.Sprintf("/big/%d", i)
		res := make(chan error, 1) // the one request
		read.Store(0)
		go func() {
			req, _ := http.NewRequest("GET", "http://"+client.proxy+path, nil)
			req.Host = cacheHost
			resp, err := c.Do(req)
			if err != nil {
				res <- err
				return
			}
			defer resp.Body.Close()
			var got bytes.Buffer
			_, err = io.Copy(&got, io.TeeReader(resp.Body, countWriter{read}))
			if err == nil && !bytes.Equal(got.Bytes(), big) {
				err = fmt.Errorf("a body of %d bytes read as complete", got.Len())
			}
			res <- err
		}()
		<-o.halfway
		waitFor(t, "the client reading the body", func() bool { return read.Load() > 0 })
		for _, p := range cc.procs[1:] {
			if st, err := p.status(); err == nil && st.Cache.Serving > 0 {
				return p, path, i, res, g
			}
		}
		gate.Store(nil) // n1 owns it: try another key
		close(g)
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("no key owned by another node than n1 in 20 tries")
	return nil, "", 0, nil, nil
}

// countWriter counts the bytes written to it.
type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

// httpServer starts an origin on loopback, closed when the test ends.
func httpServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestRealCachePrivateNotFetchedTwice: on a shared route, a response the
// cache may not keep (private) costs the origin one request per client
// request once each node has seen it: a node asks the key's owner to fill
// it only once, then remembers it for hit-for-pass, instead of having the
// owner fetch and drop every one before fetching it again itself (two
// origin requests for each, found by the red team).
func TestRealCachePrivateNotFetchedTwice(t *testing.T) {
	var hits atomic.Int64
	up := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "private, max-age=60")
		io.WriteString(w, "yours")
	})
	cc := newCacheCluster(t, up, 3)
	c := &http.Client{Timeout: 10 * time.Second}
	const perNode = 5
	for _, p := range cc.procs {
		for range perNode {
			if b, code, err := cacheGet(c, p, "/account"); err != nil || code != 200 || string(b) != "yours" {
				t.Fatalf("%s: %d %q %v", p.name, code, b, err)
			}
		}
	}
	// One per request, and one more at each of the two nodes that do not
	// own the key (the owner's fetch of their first request).
	if n, want := hits.Load(), int64(3*perNode+2); n > want {
		t.Fatalf("%d requests reached the origin for %d client requests, want at most %d", n, 3*perNode, want)
	}
}
