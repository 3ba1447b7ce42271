package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// logFile collects a process's stderr. A file, not a pipe: the successor
// inherits it, and a pipe would keep cmd.Wait waiting for the successor.
type logFile struct{ f *os.File }

func newLogFile(t *testing.T) *logFile {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &logFile{f}
}

func (l *logFile) String() string {
	b, _ := os.ReadFile(l.f.Name())
	return string(b)
}

// nodeDir is a node's files: node.yaml, cluster.yaml, the pid file and
// the upgrade socket.
type nodeDir struct {
	dir, proxyAddr, adminAddr string
	nodeFile                  string
	extra                     string // more node-file lines
	grace                     string // grace_period
}

func newNodeDir(t *testing.T, upstream, extraListeners string) *nodeDir {
	t.Helper()
	dir, err := os.MkdirTemp("", "pn") // short: it holds a Unix socket
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &nodeDir{dir: dir, proxyAddr: freePort(t), adminAddr: freePort(t), nodeFile: filepath.Join(dir, "node.yaml"), grace: "20s"}
	d.writeCluster(upstream)
	d.writeNode(extraListeners)
	return d
}

// writeCluster routes every request to upstream; a successor reads it.
func (d *nodeDir) writeCluster(upstream string) {
	os.WriteFile(filepath.Join(d.dir, "cluster.yaml"), []byte(fmt.Sprintf(
		"upstreams:\n  - name: web\n    peers: [{addr: %s}]\nroutes:\n  - upstream: web\n", upstream)), 0o644)
}

func (d *nodeDir) writeNode(extraListeners string) {
	os.WriteFile(d.nodeFile, []byte(fmt.Sprintf(
		"name: up\nadmin_addr: %s\nlisteners:\n  - {name: http, addr: %s, h2c: true}\n%scluster_config: cluster.yaml\ngrace_period: %s\nupgrade_socket: up.sock\n%s",
		d.adminAddr, d.proxyAddr, extraListeners, d.grace, d.extra)), 0o644)
}

func (d *nodeDir) pid(t *testing.T) int {
	b, _ := os.ReadFile(filepath.Join(d.dir, "pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// startLogged starts cmd with its stderr in a log file, and kills it at
// the test's end if it is still running.
func startLogged(t *testing.T, cmd *exec.Cmd) *logFile {
	t.Helper()
	stderr := newLogFile(t)
	cmd.Stderr = stderr.f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return stderr
}

// launch starts "pingora-node run" on d and waits for /readyz.
func launch(t *testing.T, d *nodeDir) (*exec.Cmd, *logFile) {
	t.Helper()
	cmd := exec.Command(binary, "run", "--config", d.nodeFile, "--pid-file", filepath.Join(d.dir, "pid"))
	stderr := startLogged(t, cmd)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("first process stderr:\n%s", stderr.String())
		}
	})
	waitFor(t, "node ready", func() bool {
		resp, err := http.Get("http://" + d.adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200 && d.pid(t) == cmd.Process.Pid
	})
	return cmd, stderr
}

// stopSuccessors ends, by PID, the successors the node under test started:
// the one the pid file names now and the one it names when the test ends
// (never the first process, which the test parents, nor a pid below 2).
func stopSuccessors(t *testing.T, d *nodeDir, first int) {
	stop := func(pid int) {
		if pid < 2 || pid == first || syscall.Kill(pid, syscall.SIGTERM) != nil {
			return
		}
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // sleep-ok: polling a process we do not parent
		}
		syscall.Kill(pid, syscall.SIGKILL)
	}
	now := d.pid(t)
	t.Cleanup(func() {
		stop(now)
		if later := d.pid(t); later != now {
			stop(later)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // sleep-ok: polling a condition under a deadline
	}
}

func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("old process did not exit")
		return nil
	}
}

func httpGet(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestUpgradeKeepsRequestsAndTunnels: SIGUSR2 starts a successor that
// takes the listeners over; a streaming response and a WebSocket tunnel
// open on the old process finish there, new requests never fail, and the
// old process exits 0 as soon as the last one ends.
func TestUpgradeKeepsRequestsAndTunnels(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			<-release
			io.WriteString(w, "last\n")
		case "/ws":
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, msg, err := c.Read(context.Background())
				if err != nil {
					return
				}
				c.Write(context.Background(), typ, msg)
			}
		default:
			io.WriteString(w, "ok")
		}
	}))
	defer up.Close()
	d := newNodeDir(t, up.Listener.Addr().String(), "")
	old, oldErr := launch(t, d)
	base := "http://" + d.proxyAddr

	resp, err := http.Get(base + "/stream")
	if err != nil {
		t.Fatalf("%v\n%s", err, oldErr.String())
	}
	defer resp.Body.Close()
	first := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first\n" {
		t.Fatalf("stream start: %q %v", first, err)
	}
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, "ws://"+d.proxyAddr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	if err := old.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "successor pid file", func() bool { p := d.pid(t); return p != 0 && p != old.Process.Pid })
	stopSuccessors(t, d, old.Process.Pid)
	for i := range 50 {
		if code, body, err := httpGet(base + "/"); err != nil || code != 200 || body != "ok" {
			t.Fatalf("request %d during the upgrade: %d %q %v", i, code, body, err)
		}
	}
	// The tunnel still works on the old process.
	if err := ws.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "still here" {
		t.Fatalf("tunnel after the upgrade: %q %v", msg, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "last\n" {
		t.Fatalf("stream end: %q %v", rest, err)
	}
	if err := waitExit(t, old); err != nil {
		t.Fatalf("old process exit: %v", err)
	}
	if code, _, err := httpGet("http://" + d.adminAddr + "/status"); err != nil || code != 200 {
		t.Fatalf("successor admin: %d %v", code, err)
	}
	if code, body, err := httpGet(base + "/"); err != nil || body != "ok" {
		t.Fatalf("successor proxy: %d %q %v", code, body, err)
	}
}

// TestFailedUpgradeKeepsServing: a successor whose config does not build
// reports why; the running process keeps serving and says so.
func TestFailedUpgradeKeepsServing(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	d := newNodeDir(t, up.Listener.Addr().String(), "")
	old, oldErr := launch(t, d)
	bad := filepath.Join(d.dir, "bad-cluster.yaml")
	os.WriteFile(bad, []byte("upstreams: []\nroutes:\n  - upstream: nowhere\n"), 0o644)
	nodeFile, _ := os.ReadFile(d.nodeFile)
	badNode := filepath.Join(d.dir, "bad-node.yaml")
	os.WriteFile(badNode, bytes.Replace(nodeFile, []byte("cluster_config: cluster.yaml"), []byte("cluster_config: bad-cluster.yaml"), 1), 0o644)
	out, err := exec.Command(binary, "run", "--upgrade", "--config", badNode).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "nowhere") {
		t.Fatalf("bad successor: %v\n%s", err, out)
	}
	waitFor(t, "old process logs the failure", func() bool { return strings.Contains(oldErr.String(), "upgrade failed") })
	if code, body, err := httpGet("http://" + d.proxyAddr + "/"); err != nil || body != "ok" {
		t.Fatalf("old process after a failed upgrade: %d %q %v", code, body, err)
	}
	if old.ProcessState != nil {
		t.Fatal("old process exited")
	}
	// Nothing to take over from: a clear error.
	other := filepath.Join(d.dir, "other.yaml")
	os.WriteFile(other, bytes.Replace(nodeFile, []byte("upgrade_socket: up.sock"), []byte("upgrade_socket: none.sock"), 1), 0o644)
	out, err = exec.Command(binary, "run", "--upgrade", "--config", other).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no running process to take over from") {
		t.Fatalf("upgrade with nothing running: %v\n%s", err, out)
	}
}

// writeCert writes a self-signed certificate for localhost with the given
// common name.
func writeCert(t *testing.T, dir, cn string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

func servedCN(t *testing.T, addr string) string {
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestSIGHUP: a new certificate is served on the next handshake; an
// invalid node file is refused and the node keeps running; a new listener
// is brought up through a hand-off to a successor.
func TestSIGHUP(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	d0 := newNodeDir(t, up.Listener.Addr().String(), "")
	tlsAddr := freePort(t)
	tlsListener := fmt.Sprintf("  - {name: https, addr: %s, tls: {cert: cert.pem, key: key.pem}}\n", tlsAddr)
	writeCert(t, d0.dir, "first")
	d0.writeNode(tlsListener)
	old, oldErr := launch(t, d0)
	if cn := servedCN(t, tlsAddr); cn != "first" {
		t.Fatalf("served %q", cn)
	}
	writeCert(t, d0.dir, "second")
	old.Process.Signal(syscall.SIGHUP)
	waitFor(t, "new certificate served", func() bool { return servedCN(t, tlsAddr) == "second" })

	good, _ := os.ReadFile(d0.nodeFile)
	os.WriteFile(d0.nodeFile, []byte("name: up\nlisteners: nope\n"), 0o644)
	old.Process.Signal(syscall.SIGHUP)
	waitFor(t, "invalid file refused", func() bool { return strings.Contains(oldErr.String(), "reload refused, running config kept") })
	if _, body, err := httpGet("http://" + d0.proxyAddr + "/"); err != nil || body != "ok" {
		t.Fatalf("after a refused reload: %q %v", body, err)
	}
	if d0.pid(t) != old.Process.Pid {
		t.Fatal("a refused reload started a successor")
	}

	os.WriteFile(d0.nodeFile, good, 0o644)
	extra := freePort(t)
	d0.writeNode(tlsListener + fmt.Sprintf("  - {name: extra, addr: %s}\n", extra))
	old.Process.Signal(syscall.SIGHUP)
	waitFor(t, "successor for the new listener", func() bool { p := d0.pid(t); return p != 0 && p != old.Process.Pid })
	stopSuccessors(t, d0, old.Process.Pid)
	if err := waitExit(t, old); err != nil {
		t.Fatalf("old process exit: %v", err)
	}
	for _, addr := range []string{d0.proxyAddr, extra} {
		if _, body, err := httpGet("http://" + addr + "/"); err != nil || body != "ok" {
			t.Fatalf("%s after the hand-off: %q %v", addr, body, err)
		}
	}
	if cn := servedCN(t, tlsAddr); cn != "second" {
		t.Fatalf("successor serves %q", cn)
	}
}

// TestUpgradeWithClusterState: a node that gossips, replicates its config
// with raft and serves RPC hands all of it to its successor: same name,
// same data directory (the old process closes raft before the new one
// opens it), the RPC listener inherited, and requests never fail.
func TestUpgradeWithClusterState(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	d := newNodeDir(t, up.Listener.Addr().String(), "")
	d.extra = fmt.Sprintf("gossip_addr: %s\ngossip_profile: fast\ndata_dir: data\ncluster_addr: %s\n", freePort(t), freePort(t))
	d.writeNode("")
	old, _ := launch(t, d)
	base := "http://" + d.proxyAddr
	waitFor(t, "replicated config served", func() bool { _, body, _ := httpGet(base + "/"); return body == "ok" })
	if err := old.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	requests := 0
	waitFor(t, "successor pid file", func() bool {
		if code, body, err := httpGet(base + "/"); err != nil || code != 200 || body != "ok" {
			t.Fatalf("request %d during the upgrade: %d %q %v", requests, code, body, err)
		}
		requests++
		p := d.pid(t)
		return p != 0 && p != old.Process.Pid
	})
	stopSuccessors(t, d, old.Process.Pid)
	if err := waitExit(t, old); err != nil {
		t.Fatalf("old process exit: %v", err)
	}
	var st struct {
		Config  struct{ Version int64 }
		Raft    struct{ State string }
		Members []struct{ Name, State string }
	}
	waitFor(t, "successor leads raft and gossips", func() bool {
		code, body, err := httpGet("http://" + d.adminAddr + "/status")
		if err != nil || code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			return false
		}
		return st.Raft.State == "Leader" && st.Config.Version == 1 && len(st.Members) == 1 && st.Members[0].State == "alive"
	})
	if _, body, err := httpGet(base + "/"); err != nil || body != "ok" {
		t.Fatalf("successor: %q %v", body, err)
	}
}

// TestSIGHUPMovesTheUpgradeSocket: a node file that names another
// upgrade_socket is applied by a hand-off like any other change: the
// successor takes over through the socket the running process offers,
// then offers its own at the new path, and the old socket file goes.
func TestSIGHUPMovesTheUpgradeSocket(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	d := newNodeDir(t, up.Listener.Addr().String(), "")
	old, oldErr := launch(t, d)
	waitFor(t, "the first socket", func() bool { return strings.Contains(oldErr.String(), "upgrade socket ready") })
	good, _ := os.ReadFile(d.nodeFile)
	os.WriteFile(d.nodeFile, bytes.Replace(good, []byte("upgrade_socket: up.sock"), []byte("upgrade_socket: moved.sock"), 1), 0o644)
	old.Process.Signal(syscall.SIGHUP)
	waitFor(t, "a successor, or its failure", func() bool {
		p := d.pid(t)
		return (p != 0 && p != old.Process.Pid) || strings.Contains(oldErr.String(), "exited")
	})
	if d.pid(t) == old.Process.Pid {
		t.Fatalf("no successor took over:\n%s", oldErr)
	}
	stopSuccessors(t, d, old.Process.Pid)
	if err := waitExit(t, old); err != nil {
		t.Fatalf("old process exit: %v", err)
	}
	if _, body, err := httpGet("http://" + d.proxyAddr + "/"); err != nil || body != "ok" {
		t.Fatalf("after the hand-off: %q %v", body, err)
	}
	moved := filepath.Join(d.dir, "moved.sock")
	waitFor(t, "the socket at the new path", func() bool { _, err := os.Stat(moved); return err == nil })
	if _, err := os.Stat(filepath.Join(d.dir, "up.sock")); !os.IsNotExist(err) {
		t.Fatalf("the old socket file is left: %v", err)
	}
}

// TestUpgradeOfAProcessWithoutItsSocket: a second node on a host, started
// with the same upgrade socket as the first (both named after the host,
// so both on the default /tmp/pingora-node-HOST.sock), logs "upgrades
// disabled: ... in use by a running process". A SIGUSR2 to it then started
// a successor that connected to that socket: the first node passed it its
// listeners and logged "upgrade failed; this process keeps serving" at
// ERROR for an upgrade nobody asked it for, and the second node's log said
// only that its successor could not bind (its own ports, which it still
// held): "address already in use ... often another pingora-node on this
// host", not why. It now refuses, says why, and both keep serving.
func TestUpgradeOfAProcessWithoutItsSocket(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	first := newNodeDir(t, up.Listener.Addr().String(), "")
	firstCmd, firstErr := launch(t, first)
	second := newNodeDir(t, up.Listener.Addr().String(), "")
	second.extra = "" // the same socket as the first, by an absolute path
	os.WriteFile(second.nodeFile, []byte(fmt.Sprintf(
		"name: up\nadmin_addr: %s\nlisteners:\n  - {name: http, addr: %s}\ncluster_config: cluster.yaml\ngrace_period: 20s\nupgrade_socket: %s\n",
		second.adminAddr, second.proxyAddr, filepath.Join(first.dir, "up.sock"))), 0o644)
	secondCmd, secondErr := launch(t, second)
	waitFor(t, "the second node's upgrades disabled", func() bool { return strings.Contains(secondErr.String(), "upgrades disabled") })
	stopSuccessors(t, second, secondCmd.Process.Pid)

	secondCmd.Process.Signal(syscall.SIGUSR2)
	waitFor(t, "the upgrade refused", func() bool {
		return strings.Contains(secondErr.String(), "upgrade refused, this process keeps serving: this process does not hold its upgrade socket")
	})
	for _, d := range []*nodeDir{first, second} {
		if code, body, err := httpGet("http://" + d.proxyAddr + "/"); err != nil || body != "ok" {
			t.Fatalf("node at %s after the refused upgrade: %d %q %v", d.proxyAddr, code, body, err)
		}
	}
	if firstCmd.ProcessState != nil || syscall.Kill(firstCmd.Process.Pid, 0) != nil || first.pid(t) != firstCmd.Process.Pid {
		t.Fatal("the first node's process was taken over")
	}
	if strings.Contains(firstErr.String(), "successor connected") || strings.Contains(firstErr.String(), "upgrade failed") {
		t.Fatalf("the first node was offered a successor it never asked for:\n%s", firstErr.String())
	}
	var st struct {
		Node struct {
			LastReload struct{ Result, Error string } `json:"last_reload"`
		} `json:"node"`
	}
	_, body, _ := httpGet("http://" + second.adminAddr + "/status")
	if json.Unmarshal([]byte(body), &st); st.Node.LastReload.Result != "refused" {
		t.Fatalf("second node's last_reload %+v, want the refusal", st.Node.LastReload)
	}
}
