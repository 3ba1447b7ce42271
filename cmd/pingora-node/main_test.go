package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the pingora-node built once for the tests that run it as a
// real process.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pingora-node-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "pingora-node")
	// -buildvcs=auto: TestVersionOfTheBinary wants the commit stamped when
	// git can give it, whatever GOFLAGS says.
	if out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a 127.0.0.1 port free for TCP and UDP, below the
// kernel's ephemeral range when it can: a node restarted on its port
// (TestRestartedVotersReturn) found it taken by some process's outgoing
// connection, which the kernel gives a port from that range, and failed
// to bind its gossip port ("address already in use").
func freePort(t *testing.T) string {
	t.Helper()
	freePorts.Lock()
	defer freePorts.Unlock()
	lo := ephemeralLow()
	for i := range 200 {
		port := 0 // the kernel's choice, when no port below the range is free
		if i < 100 && lo > freePortMin {
			port = freePortMin + rand.IntN(lo-freePortMin)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		// The kernel may hand a closed port out again: never give the same
		// one twice (two nodes of a test once got it, one as its admin
		// address and one as its cluster port, and the second failed to
		// bind).
		if !freePorts.given[addr] {
			freePorts.given[addr] = true
			return addr
		}
	}
	t.Fatal("no port that was not handed out already")
	return ""
}

// freePortMin is the lowest port freePort picks itself.
const freePortMin = 20000

// ephemeralLow is the first port of the kernel's ephemeral range (Linux),
// or 0 when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 0
	}
	return lo
}

// freePorts is every address freePort returned in this test process.
var freePorts = struct {
	sync.Mutex
	given map[string]bool
}{given: map[string]bool{}}

// startProcess writes the files and starts "pingora-node run"; it returns
// the command, the proxy address and the admin address once /readyz is 200.
func startProcess(t *testing.T, upstream string) (*exec.Cmd, string, string) {
	t.Helper()
	d := newNodeDir(t, upstream, "")
	cmd, _ := launch(t, d)
	return cmd, d.proxyAddr, d.adminAddr
}

// TestGracefulSIGTERM sends SIGTERM while a request is in flight: the
// request completes, new connections are refused, the process exits 0.
func TestGracefulSIGTERM(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	}))
	defer up.Close()
	cmd, proxyAddr, _ := startProcess(t, up.Listener.Addr().String())
	result := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + proxyAddr + "/slow")
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- string(b)
	}()
	<-entered
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", proxyAddr, time.Second)
		if err != nil {
			break // the listener is closed
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond) // sleep-ok: polling for the listener to close
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("process exited with a request in flight: %v", err)
	case <-time.After(200 * time.Millisecond): // sleep-ok: proving the process waits
	}
	close(release)
	if got := <-result; got != "done" {
		t.Fatalf("in-flight request got %q", got)
	}
	if err := <-exited; err != nil {
		t.Fatalf("exit: %v", err)
	}
}

func TestStatusCommand(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	cmd, _, admin := startProcess(t, up.Listener.Addr().String())
	var out, errb bytes.Buffer
	if code := run([]string{"status", "--admin", "http://" + admin}, &out, &errb); code != 0 {
		t.Fatalf("status exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "node      up") || !strings.Contains(out.String(), up.Listener.Addr().String()) {
		t.Fatalf("status output:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"status", "--admin", admin, "--json"}, &out, &errb); code != 0 {
		t.Fatal("status --json failed")
	}
	var doc map[string]any
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("--json output is not JSON: %v", err)
	}
	peer := up.Listener.Addr().String()
	out.Reset()
	if code := run([]string{"peer", "disable", "--admin", admin, "web", peer}, &out, &errb); code != 0 || out.String() != "web "+peer+": disabled\n" {
		t.Fatalf("peer disable: exit %d %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"status", "--admin", admin, "--json"}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"disabled": true`) {
		t.Fatalf("status after disable:\n%s", out.String())
	}
	errb.Reset()
	if code := run([]string{"peer", "enable", "--admin", admin, "web", "127.0.0.1:1"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "HTTP 404") {
		t.Fatalf("peer enable of an unknown peer: exit %d %q", code, errb.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	errb.Reset()
	if code := run([]string{"status", "--admin", admin}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "unreachable") {
		t.Fatalf("status of a stopped node: exit %d, %q", code, errb.String())
	}
}

func TestRunRefusesInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "node.yaml"), []byte("name: x\nlisteners:\n  - {name: a, addr: 127.0.0.1:99999}\ncluster_config: c.yaml\n"), 0o644)
	out, err := exec.Command(binary, "run", "--config", filepath.Join(dir, "node.yaml")).CombinedOutput()
	if err == nil {
		t.Fatal("invalid node file accepted")
	}
	if !strings.Contains(string(out), "node.yaml:3: listeners[0].addr") {
		t.Fatalf("error does not name file, line and field:\n%s", out)
	}
}

func TestVersionAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if run([]string{"version"}, &out, &errb) != 0 || !strings.HasPrefix(out.String(), "pingora-node ") {
		t.Fatalf("version: %q", out.String())
	}
	if run([]string{"bogus"}, &out, &errb) != 2 {
		t.Fatal("unknown command accepted")
	}
	sc := bufio.NewScanner(strings.NewReader(usage))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "\t") {
			t.Fatal("usage text holds a tab")
		}
	}
}
