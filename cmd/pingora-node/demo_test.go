package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node"
)

// TestDemo runs the README's first command: three node processes form one
// cluster, serve the sample upstreams, and stop cleanly on Ctrl-C.
func TestDemo(t *testing.T) {
	cmd := exec.Command(binary, "demo")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := newLogFile(t)
	cmd.Stderr = stderr.f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
		}
	})
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var banner []string
	timeout := time.After(60 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended early:\n%s\n%s", strings.Join(banner, "\n"), stderr.String())
			}
			banner = append(banner, l)
			done = strings.HasPrefix(l, "Press Ctrl-C")
		case <-timeout:
			t.Fatalf("demo not up after 60s:\n%s\n%s", strings.Join(banner, "\n"), stderr.String())
		}
	}
	text := strings.Join(banner, "\n")
	nodes := regexp.MustCompile(`demo-\d\s+pid \d+\s+proxy http://(\S+)\s+admin http://(\S+)`).FindAllStringSubmatch(text, -1)
	if len(nodes) != 3 {
		t.Fatalf("banner:\n%s", text)
	}
	for _, n := range nodes {
		if code, body, err := httpGet("http://" + n[1] + "/hello"); err != nil || code != 200 || !strings.Contains(body, "hello from upstream") {
			t.Fatalf("proxy %s: %d %q %v", n[1], code, body, err)
		}
	}
	demoCacheAndLimits(t, []string{nodes[0][1], nodes[1][1], nodes[2][1]}, []string{nodes[0][2], nodes[1][2], nodes[2][2]})
	_, status, _ := httpGet("http://" + nodes[2][2] + "/status")
	if strings.Count(status, `"state": "alive"`) != 3 || !strings.Contains(status, `"raft"`) {
		t.Fatalf("status of demo-3:\n%s", status)
	}
	cmd.Process.Signal(syscall.SIGINT)
	rest := make(chan string, 1)
	go func() {
		var b strings.Builder
		for l := range lines {
			b.WriteString(l + "\n")
		}
		rest <- b.String()
	}()
	// The demo exits 1 and prints them when a node logged an ERROR line
	// or a line that is not JSON (issue 12).
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("demo exit: %v\n%s", err, stderr.String())
	}
	if tail := <-rest; !strings.HasSuffix(tail, "stopped\n") {
		t.Fatalf("demo stop output:\n%s\nstderr:\n%s", tail, stderr.String())
	}
}

// TestDemoStopsNodesOnError: an error after the nodes started and serve
// (here the config agreement, given no time at all) stops every node
// process the demo started: none is left running and their ports are
// free again. (The deferred cleanup captured the node list while it was
// still empty, so only the stop call each error path repeated stopped the
// nodes; now one deferred stop covers every return.)
func TestDemoStopsNodesOnError(t *testing.T) {
	var stderr strings.Builder
	d := &demo{exe: binary, stdout: io.Discard, stderr: &stderr, sigs: make(chan os.Signal), startWithin: 30 * time.Second}
	t.Cleanup(func() {
		for _, n := range d.nodes {
			if processAlive(n.cmd.Process.Pid) {
				n.cmd.Process.Kill()
			}
		}
	})
	if code := d.run(); code != 1 || !strings.Contains(stderr.String(), "did not agree on a config within 0s") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if len(d.nodes) != demoNodes {
		t.Fatalf("%d nodes started, want %d before the error", len(d.nodes), demoNodes)
	}
	for _, n := range d.nodes {
		select {
		case <-n.exited:
		default:
			t.Fatalf("%s (pid %d) still running after the demo returned", n.name, n.cmd.Process.Pid)
		}
		for _, addr := range []string{n.proxy, n.admin, n.gossip} {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("%s: %s still bound after the demo returned: %v", n.name, addr, err)
			}
			ln.Close()
		}
	}
	if _, err := os.Stat(filepath.Join(d.dir, "demo-1.log")); err != nil {
		t.Fatalf("the logs of a failed demo are not kept: %v", err)
	}
	os.RemoveAll(d.dir)
}

// TestDemoPortTakenMeanwhile: a port the demo picked free and that is
// taken before the node binds it (another demo or test on the machine,
// or an outgoing connection given that ephemeral port) no longer ends the
// demo with "demo-1 exited before it served": the node is started again
// on other ports. Here demo-1's first cluster port is held by the test.
func TestDemoPortTakenMeanwhile(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	var stderr strings.Builder
	d := &demo{exe: binary, stdout: io.Discard, stderr: &stderr, sigs: make(chan os.Signal), startWithin: 30 * time.Second}
	taken := false
	d.pick = func(preferred string) string {
		if preferred == "127.0.0.1:0" && !taken { // demo-1's cluster_addr
			taken = true
			return held.Addr().String()
		}
		return freeAddr(preferred)
	}
	t.Cleanup(func() {
		for _, n := range d.nodes {
			if processAlive(n.cmd.Process.Pid) {
				n.cmd.Process.Kill()
			}
		}
		os.RemoveAll(d.dir)
	})
	if code := d.run(); code != 1 || !strings.Contains(stderr.String(), "did not agree on a config within 0s") {
		t.Fatalf("exit %d, stderr %q; want every node started, then no time to agree", code, stderr.String())
	}
	if !taken || len(d.nodes) != demoNodes {
		t.Fatalf("taken %v, %d nodes; want the held port given once and %d nodes", taken, len(d.nodes), demoNodes)
	}
	b, _ := os.ReadFile(filepath.Join(d.dir, "demo-1.log"))
	if !strings.Contains(string(b), "address already in use") {
		t.Fatalf("demo-1's log does not show its first start failing:\n%s", b)
	}
}

// TestDemoAgreed: the banner waits until every node applied the config,
// sees all alive, and uses one cache ring of all of them. A node whose
// ring lacked a peer still (its metadata not gossiped yet) once answered
// TestDemo's first request for a key with a miss where the test wanted a
// hit.
func TestDemoAgreed(t *testing.T) {
	status := func(version int64, alive, ringMembers int, ring uint64) node.Status {
		var st node.Status
		b := fmt.Sprintf(`{"config":{"version":%d},"members":[`, version)
		for i := range 3 {
			state := "alive"
			if i >= alive {
				state = "suspect"
			}
			if i > 0 {
				b += ","
			}
			b += fmt.Sprintf(`{"name":"demo-%d","state":%q}`, i+1, state)
		}
		b += fmt.Sprintf(`],"cache":{"detail":{"ring_version":%d,"ring_members":%d}}}`, ring, ringMembers)
		if err := json.Unmarshal([]byte(b), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	ok := status(1, 3, 3, 7)
	for _, tc := range []struct {
		name string
		sts  []node.Status
		want bool
	}{
		{"agreed", []node.Status{ok, ok, ok}, true},
		{"no config yet", []node.Status{ok, status(0, 3, 3, 7), ok}, false},
		{"a peer not alive yet", []node.Status{ok, ok, status(1, 2, 3, 7)}, false},
		{"a ring without a peer", []node.Status{ok, status(1, 3, 2, 5), ok}, false},
		{"rings of two versions", []node.Status{ok, ok, status(1, 3, 3, 8)}, false},
		{"no cache status", []node.Status{ok, {Config: ok.Config, Members: ok.Members}, ok}, false},
	} {
		if got := demoAgreed(tc.sts); got != tc.want {
			t.Errorf("%s: demoAgreed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// demoViews returns, for a failure message, how each node at admins sees
// the cluster: its members, and the cache ring it places keys on.
func demoViews(admins []string) string {
	var b strings.Builder
	for _, a := range admins {
		resp, err := http.Get("http://" + a + "/status")
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", a, err)
			continue
		}
		var st node.Status
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || st.Cache == nil {
			fmt.Fprintf(&b, "%s: no cache status (%v)\n", a, err)
			continue
		}
		var members []string
		for _, m := range st.Members {
			members = append(members, m.Name+"="+string(m.State))
		}
		fmt.Fprintf(&b, "%s (%s): members %v; cache ring version %d of %d members; cache detail %+v\n",
			a, st.Node.Name, members, st.Cache.Detail.RingVersion, st.Cache.Detail.RingMembers, st.Cache.Detail)
	}
	return b.String()
}

// demoCacheAndLimits tries what the demo's banner suggests: /static/ is
// filled once for the whole cluster (the same body, from one upstream, on
// every node, then hits), and /api/ admits at most 5 requests per 10 s
// per client across the three nodes together.
func demoCacheAndLimits(t *testing.T, proxies, admins []string) {
	t.Helper()
	var first string
	for i, p := range proxies {
		req, _ := http.NewRequest("GET", "http://"+p+"/static/demo-test", nil)
		req.Host = "shop.test"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cs := resp.Header.Get("Cache-Status")
		if i == 0 {
			first = string(body)
		} else if string(body) != first || !strings.Contains(cs, "; hit") {
			t.Fatalf("node %s: Cache-Status %q, body %q; want a hit with the first node's body %q\nhow each node sees the cluster:\n%s",
				p, cs, body, first, demoViews(admins))
		}
	}
	admitted, refused := 0, 0
	for i := 0; i < 12; i++ {
		code, _, err := httpGet("http://" + proxies[i%len(proxies)] + "/api/x")
		switch {
		case err != nil:
			t.Fatal(err)
		case code == 200:
			admitted++
		case code == 429:
			refused++
		default:
			t.Fatalf("/api/x: %d", code)
		}
	}
	if admitted == 0 || admitted > 5 || refused == 0 {
		t.Fatalf("/api/ over 12 requests: %d admitted, %d refused; want 1-5 admitted across the nodes", admitted, refused)
	}
}
