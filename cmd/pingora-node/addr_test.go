package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/node"
)

// runNode starts "pingora-node run args..." with env added to the
// environment; it is killed at cleanup and its stderr logged on failure.
func runNode(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"run"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr := newLogFile(t)
	cmd.Stderr = stderr.f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", strings.Join(args, " "), stderr.String())
		}
	})
	return cmd
}

func nodeStatus(admin string) (*node.Status, bool) {
	resp, err := http.Get("http://" + admin + "/status")
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	var st node.Status
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil, false
	}
	return &st, true
}

func getBody(t *testing.T, c *http.Client, url string) (string, string) {
	resp, err := c.Get(url)
	if err != nil {
		return "", ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Proto, string(b)
}

func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}

// loopbackTrio finds three loopback IPs, 127.a.b.11-13, on which the
// default raft port 7947 and the given extra ports are free (the test
// relies on raft's default port; another test may hold it on one IP).
func loopbackTrio(t *testing.T, ports ...int) []string {
	t.Helper()
	for b := 0; b < 50; b++ {
		ips := []string{fmt.Sprintf("127.0.%d.11", b), fmt.Sprintf("127.0.%d.12", b), fmt.Sprintf("127.0.%d.13", b)}
		free := true
		for _, ip := range ips {
			for _, p := range append([]int{7947}, ports...) {
				ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
				if err != nil {
					free = false
					continue
				}
				ln.Close()
			}
		}
		if free {
			return ips
		}
	}
	t.Skip("no loopback IP triple with port 7947 free")
	return nil
}

// TestClusterFromGossipAddrAlone (issue 12): three nodes on 127.0.x.11,
// .12 and .13 with the same ports and one node file, each given only
// --name, --gossip-addr, --admin-addr, --listen and --data-dir: raft binds
// and advertises the gossip IP with the default port, so the three
// bootstrap one cluster, elect a leader and serve the seeded config.
func TestClusterFromGossipAddrAlone(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin") }))
	defer up.Close()
	port := func() int { _, p, _ := net.SplitHostPort(freePort(t)); n, _ := strconv.Atoi(p); return n }
	gp, ap, pp := port(), port(), port()
	ips := loopbackTrio(t, gp, ap, pp)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte("upstreams:\n  - name: web\n    peers: [{addr: "+up.Listener.Addr().String()+"}]\nroutes:\n  - upstream: web\n"), 0o644)
	shared := filepath.Join(dir, "node.yaml")
	os.WriteFile(shared, []byte(fmt.Sprintf("join: [%s:%d]\nbootstrap_expect: 3\ngossip_profile: fast\ncluster_config: cluster.yaml\n", ips[0], gp)), 0o644)
	for i, ip := range ips {
		at := func(p int) string { return net.JoinHostPort(ip, strconv.Itoa(p)) }
		runNode(t, nil, "--config", shared, "--name", fmt.Sprintf("n%d", i+1), "--gossip-addr", at(gp),
			"--admin-addr", at(ap), "--listen", at(pp), "--data-dir", filepath.Join(dir, fmt.Sprintf("d%d", i+1)),
			"--upgrade-socket", filepath.Join(dir, fmt.Sprintf("n%d.sock", i+1)))
	}
	admin := func(i int) string { return net.JoinHostPort(ips[i], strconv.Itoa(ap)) }
	waitFor(t, "3 voters, one leader and config v1 on every node", func() bool {
		leaders := map[string]bool{}
		for i := range ips {
			st, ok := nodeStatus(admin(i))
			if !ok || st.Raft == nil || len(st.Raft.Voters) != 3 || st.Raft.LeaderID == "" || st.Config == nil || st.Config.Version != 1 {
				return false
			}
			leaders[st.Raft.LeaderID] = true
		}
		return len(leaders) == 1
	})
	st, _ := nodeStatus(admin(1))
	for _, m := range st.Members {
		i, _ := strconv.Atoi(strings.TrimPrefix(m.Name, "n"))
		want := net.JoinHostPort(ips[i-1], "7947")
		if m.Meta.Addrs.Raft != want || m.Addr != net.JoinHostPort(ips[i-1], strconv.Itoa(gp)) {
			t.Fatalf("member %s: gossip %s raft %s, want raft %s", m.Name, m.Addr, m.Meta.Addrs.Raft, want)
		}
	}
	for _, ip := range ips {
		if _, body := getBody(t, http.DefaultClient, "http://"+net.JoinHostPort(ip, strconv.Itoa(pp))+"/"); body != "origin" {
			t.Fatalf("proxy on %s answered %q", ip, body)
		}
	}
}

// TestRunWithoutNodeFile (issue 12): a node from flags alone serves
// HTTP/1.1 and h2c on its --listen address once a config is written
// through its admin API (it replicates its config with raft: with a data
// dir and no config yet it is not ready); one from PINGORA_* variables
// alone is named after the host.
func TestRunWithoutNodeFile(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin") }))
	defer up.Close()
	dir := t.TempDir()
	proxyAddr, admin := freePort(t), freePort(t)
	runNode(t, nil, "--name", "n1", "--listen", proxyAddr, "--data-dir", filepath.Join(dir, "d1"),
		"--admin-addr", admin, "--cluster-addr", "127.0.0.1:0", "--upgrade-socket", filepath.Join(dir, "n1.sock"))
	waitFor(t, "the node's admin API", func() bool { _, ok := nodeStatus(admin); return ok })
	if resp, err := http.Get("http://" + admin + "/readyz"); err != nil || resp.StatusCode != 503 {
		t.Fatalf("/readyz with no cluster config yet: %v %v", resp.StatusCode, err)
	}
	body := "upstreams:\n  - name: web\n    peers: [{addr: " + up.Listener.Addr().String() + "}]\nroutes:\n  - upstream: web\n"
	waitFor(t, "a config write accepted", func() bool {
		req, _ := http.NewRequest("PUT", "http://"+admin+"/v1/config", bytes.NewBufferString(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	url := "http://" + proxyAddr + "/"
	waitFor(t, "HTTP/1.1 proxied", func() bool { p, b := getBody(t, http.DefaultClient, url); return p == "HTTP/1.1" && b == "origin" })
	if p, b := getBody(t, h2cClient(), url); p != "HTTP/2.0" || b != "origin" {
		t.Fatalf("h2c: %s %q", p, b)
	}
	st, _ := nodeStatus(admin)
	if st.Node.Name != "n1" || len(st.Listeners) != 1 || st.Listeners[0].Name != "listen-1" || !st.Listeners[0].H2C {
		t.Fatalf("status: %+v %+v", st.Node, st.Listeners)
	}

	host, err := os.Hostname()
	if err != nil || !validName(host) {
		t.Skipf("host name %q is not a valid node name", host)
	}
	admin2 := freePort(t)
	runNode(t, []string{"PINGORA_CONFIG=", "PINGORA_NAME=", "PINGORA_LISTEN=" + freePort(t), "PINGORA_ADMIN_ADDR=" + admin2,
		"PINGORA_DATA_DIR=" + filepath.Join(dir, "d2"), "PINGORA_RAFT_ADDR=127.0.0.1:0",
		"PINGORA_UPGRADE_SOCKET=" + filepath.Join(dir, "n2.sock")})
	waitFor(t, "the environment-only node's admin API", func() bool {
		st, ok := nodeStatus(admin2)
		return ok && st.Node.Name == host
	})
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}

// TestRunNamesTheBadSource: a value refused at start is reported with the
// flag or variable that set it, and nothing starts.
func TestRunNamesTheBadSource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "node.yaml")
	os.WriteFile(file, []byte("name: from file\nlisteners: [{name: http, addr: 127.0.0.1:0}]\ndata_dir: d\n"), 0o644)
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"bootstrap-expect -1", nil, []string{"--name", "n1", "--bootstrap-expect", "-1"}, "flag --bootstrap-expect: bootstrap_expect: -1 is not between 0 and 7"},
		{"name from the environment", []string{"PINGORA_NAME=two words"}, nil, `PINGORA_NAME: name: "two words" is not a valid node name`},
		{"name in the file", nil, nil, `node.yaml:1: name: "from file" is not a valid node name`},
		{"loopback raft", nil, []string{"--name", "n1", "--join", "10.0.0.1:7946", "--raft-addr", "127.0.0.1:7947"},
			"flag --raft-addr: raft_addr: 127.0.0.1:7947 is a loopback address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary, append([]string{"run", "--config", file}, tc.args...)...)
			cmd.Env = append(os.Environ(), append([]string{"PINGORA_NAME="}, tc.env...)...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
				t.Fatalf("exit %v, output:\n%s\nwant exit 2 and %q", err, out, tc.want)
			}
		})
	}
}
