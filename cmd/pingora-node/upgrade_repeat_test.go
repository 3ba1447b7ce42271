package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/pingora-go/pingora-go/proxy/handoff"
)

// generationUpstream answers "ok G" where G is the generation whose
// cluster config routes to it, so a response says which process served
// it. "/hold" answers "held by G" at once and the rest when release closes.
func generationUpstream(gen int, release <-chan struct{}, load *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hold" {
			load.Add(1)
			fmt.Fprintf(w, "ok %d", gen)
			return
		}
		fmt.Fprintf(w, "held by %d\n", gen)
		w.(http.Flusher).Flush()
		select {
		case <-release:
			io.WriteString(w, "done\n")
		case <-r.Context().Done():
		}
	})
}

// steadyLoad runs one client of each kind in a loop until stop: HTTP/1.1
// keep-alive, HTTP/1.1 with a new connection per request, and h2c.
type steadyLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	stopOnce   sync.Once
	wg         sync.WaitGroup
}

func startSteadyLoad(url string) *steadyLoad {
	l := &steadyLoad{stop: make(chan struct{})}
	h2c := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	for _, rt := range []http.RoundTripper{&http.Transport{}, &http.Transport{DisableKeepAlives: true}, h2c} {
		c := &http.Client{Transport: rt, Timeout: 30 * time.Second}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.one(c, url)
			}
		}()
	}
	return l
}

func (l *steadyLoad) one(c *http.Client, url string) {
	resp, err := c.Get(url)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode != 200 || !strings.HasPrefix(string(body), "ok ")) {
			err = fmt.Errorf("%d %q", resp.StatusCode, body)
		}
	}
	if err == nil {
		l.ok.Add(1)
		return
	}
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.errs) < 10 {
		l.errs = append(l.errs, err.Error())
	}
	l.mu.Unlock()
}

func (l *steadyLoad) finish() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// holdOn opens a request that generation gen serves and that stays open
// until the upstream releases it: the process keeps draining meanwhile.
// A request an older generation accepted while it closed its listeners is
// dropped and tried again.
func holdOn(t *testing.T, url string, gen int) (*http.Response, *bufio.Reader) {
	t.Helper()
	var resp *http.Response
	var rd *bufio.Reader
	waitFor(t, fmt.Sprintf("a request held by generation %d", gen), func() bool {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		r, err := c.Get(url + "/hold")
		if err != nil {
			t.Fatalf("hold on generation %d: %v", gen, err)
		}
		rd = bufio.NewReader(r.Body)
		line, err := rd.ReadString('\n')
		if err == nil && line == fmt.Sprintf("held by %d\n", gen) {
			resp = r
			return true
		}
		r.Body.Close()
		return false
	})
	return resp, rd
}

// processAlive: pid runs and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// upgradeChain drives one node through generations of upgrades.
// Generation g routes to upstream ups[g] and holds one request open.
type upgradeChain struct {
	t          *testing.T
	d          *nodeDir
	logs       *logFile
	base       string
	sock       string
	bound      os.FileInfo // the upgrade socket as the first process bound it
	ups        []string
	served     []atomic.Int64
	pids       []int // generation g's pid, as the pid file named it
	holds      []*bufio.Reader
	successors int // hand-offs that succeeded
}

func (c *upgradeChain) count(s string) int { return strings.Count(c.logs.String(), s) }

// started lists every successor a process started, from the log.
func (c *upgradeChain) started() []int {
	var pids []int
	for _, m := range regexp.MustCompile(`started successor pid (\d+)`).FindAllStringSubmatch(c.logs.String(), -1) {
		p, _ := strconv.Atoi(m[1])
		pids = append(pids, p)
	}
	return pids
}

// hold waits until the current generation serves load and holds a request
// on it: it drains until the upstream releases it.
func (c *upgradeChain) hold() {
	g := len(c.pids) - 1
	waitFor(c.t, fmt.Sprintf("load served by generation %d", g), func() bool { return c.served[g].Load() > 0 })
	resp, rd := holdOn(c.t, c.base, g)
	c.t.Cleanup(func() { resp.Body.Close() })
	c.holds = append(c.holds, rd)
}

// upgrade sends SIGUSR2 to target and waits until its successor took
// over; see takenOver.
func (c *upgradeChain) upgrade(target int) {
	g := len(c.pids)
	c.d.writeCluster(c.ups[g]) // the successor's config names its own upstream
	c.signal(target)
	c.takenOver()
}

// signal sends SIGUSR2 to target and waits until it started a successor.
func (c *upgradeChain) signal(target int) {
	before := len(c.started())
	if err := syscall.Kill(target, syscall.SIGUSR2); err != nil {
		c.t.Fatalf("upgrade to generation %d: %v", len(c.pids), err)
	}
	waitFor(c.t, fmt.Sprintf("pid %d starts a successor", target), func() bool { return len(c.started()) > before })
}

// takenOver waits until one more successor took over and serves (its
// "upgrade socket ready" is logged after it wrote the pid file) and checks
// the chain: the pid file names a new process, every older generation
// still drains, and the upgrade socket is still the file the first
// process bound.
func (c *upgradeChain) takenOver() {
	t, g := c.t, len(c.pids)
	c.successors++
	waitFor(t, fmt.Sprintf("generation %d: %d hand-offs in all", g, c.successors), func() bool {
		return c.count(`"msg":"upgrade socket ready"`) == 1+c.successors
	})
	pid := c.d.pid(t)
	if slices.Contains(c.pids, pid) {
		t.Fatalf("generation %d: the pid file still names pid %d\n%s", g, pid, c.logs)
	}
	for k, p := range c.pids {
		if !processAlive(p) {
			t.Fatalf("generation %d: generation %d (pid %d) exited; it should still drain its held request\n%s", g, k, p, c.logs)
		}
	}
	c.pids = append(c.pids, pid)
	if fi, err := os.Stat(c.sock); err != nil || !os.SameFile(fi, c.bound) {
		t.Fatalf("generation %d: the upgrade socket is not the one first bound: %v\n%s", g, err, c.logs)
	}
}

// upgradeDuringHandoff requests an upgrade while another successor (the
// test, through the upgrade socket) is in the middle of its hand-off: the
// new successor connects and waits in the socket's queue; when the one in
// the middle gives up, the running process serves the queued one.
func (c *upgradeChain) upgradeDuringHandoff() {
	t, cur := c.t, c.pids[len(c.pids)-1]
	c.d.writeCluster(c.ups[len(c.pids)])
	mid, err := handoff.Request(c.sock, 10*time.Second) // the listeners are passed: mid hand-off
	if err != nil {
		t.Fatal(err)
	}
	c.signal(cur)
	queued := c.started()[len(c.started())-1]
	waitFor(t, fmt.Sprintf("successor %d connects to the upgrade socket", queued), func() bool { return hasSocket(queued) })
	if n := c.count(`"msg":"upgrade socket ready"`); n != 1+c.successors {
		t.Fatalf("a successor took over while another was in the middle of its hand-off (%d ready)", n)
	}
	mid.Fail(errors.New("test successor gives up"))
	c.takenOver()
}

// hasSocket: pid has a socket open (a successor's first is its
// connection to the upgrade socket).
func hasSocket(pid int) bool {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			return true
		}
	}
	return false
}

// TestUpgradesWhileGenerationsDrain: ten upgrades in a row, each requested
// while every generation before it still drains (each holds a request
// open; the grace period is longer than the test), under a steady load of
// HTTP/1.1 (keep-alive, and a new connection per request) and h2c. Every
// third one is requested of a generation that already handed off and
// drains (a signal sent to a stale pid): its successor takes over from the
// current one. A last one is requested while another successor is in the
// middle of its hand-off: it waits its turn. Each hand-off succeeds, no request fails, every generation serves load,
// the upgrade socket stays the file the first process bound; once the
// held requests end every old process exits without being cut short, and
// the last one, stopped, removes the socket and pid files. (Regression: an
// old process removed its successor's upgrade socket or pid file as it
// exited, and the next upgrade found no process to take over from.)
func TestUpgradesWhileGenerationsDrain(t *testing.T) {
	const upgrades = 10
	release := make(chan struct{})
	var releaseOnce sync.Once
	c := &upgradeChain{t: t, ups: make([]string, upgrades+2), served: make([]atomic.Int64, upgrades+2)}
	for g := range c.ups {
		srv := httptest.NewServer(generationUpstream(g, release, &c.served[g]))
		t.Cleanup(srv.Close)
		c.ups[g] = srv.Listener.Addr().String()
	}
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the servers close
	c.d = newNodeDir(t, c.ups[0], "")
	c.d.grace = "5m"
	c.d.writeNode("")
	old, logs := launch(t, c.d)
	c.logs, c.pids, c.base = logs, []int{old.Process.Pid}, "http://"+c.d.proxyAddr
	t.Cleanup(func() {
		for _, p := range c.started() {
			if processAlive(p) {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
	})
	c.sock = filepath.Join(c.d.dir, "up.sock")
	var err error
	if c.bound, err = os.Stat(c.sock); err != nil {
		t.Fatal(err)
	}
	load := startSteadyLoad(c.base + "/")
	defer load.finish()

	for g := range upgrades {
		c.hold()
		target := c.pids[g]
		if g%3 == 2 {
			target = c.pids[g-1] // handed off already, draining
		}
		c.upgrade(target)
	}
	c.hold()
	c.upgradeDuringHandoff()
	waitFor(t, "load served by the last generation", func() bool { return c.served[upgrades+1].Load() > 0 })
	releaseOnce.Do(func() { close(release) })
	c.finish(old, load)
}

// finish checks that the held requests complete, every process but the
// last exits after a full drain, no request failed, and that the last
// generation, stopped, removes the files it owns.
func (c *upgradeChain) finish(first *exec.Cmd, load *steadyLoad) {
	t := c.t
	for g, rd := range c.holds {
		if rest, err := io.ReadAll(rd); err != nil || string(rest) != "done\n" {
			t.Fatalf("request held by generation %d: %q %v", g, rest, err)
		}
	}
	if err := waitExit(t, first); err != nil {
		t.Fatalf("generation 0 exit: %v", err)
	}
	last := c.pids[len(c.pids)-1]
	started := c.started()
	for _, p := range started {
		if p != last {
			waitFor(t, fmt.Sprintf("pid %d exits", p), func() bool { return !processAlive(p) })
		}
	}
	load.finish()
	if n := load.failed.Load(); n != 0 || load.ok.Load() == 0 {
		t.Fatalf("%d requests failed, %d succeeded: %v", n, load.ok.Load(), load.errs)
	}
	if len(started) != c.successors || c.count(`"msg":"stopped"`) != c.successors || c.count("grace period over") > 0 ||
		c.count("upgrade failed") != 1 || c.count("after the hand-off: starting a process") != 3 {
		t.Fatalf("%d successors started, %d processes stopped; want %d each, all drained in time, 1 upgrade given up, 3 requested of a draining process:\n%s",
			len(started), c.count(`"msg":"stopped"`), c.successors, c.logs)
	}
	t.Logf("%d hand-offs, %d requests, 0 failed", c.successors, load.ok.Load())

	syscall.Kill(last, syscall.SIGTERM)
	waitFor(t, "the last generation exits", func() bool { return !processAlive(last) })
	for _, f := range []string{c.sock, filepath.Join(c.d.dir, "pid")} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left behind after the last generation stopped: %v", f, err)
		}
	}
}
