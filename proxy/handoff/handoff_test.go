package handoff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the successor process: with
// HANDOFF_CHILD=<socket> it runs child() instead of the tests.
func TestMain(m *testing.M) {
	if path := os.Getenv("HANDOFF_CHILD"); path != "" {
		if os.Getenv("HANDOFF_MODE") == "squat" {
			squat(path)
			return
		}
		child(path, os.Getenv("HANDOFF_MODE"))
		return
	}
	os.Exit(m.Run())
}

// child takes over the listeners named a and b, serves "new" on them and
// runs until its stdin closes. Modes: "fail" reports an error instead,
// "die" exits before releasing, "took" says how many it received and
// exits.
func child(path, mode string) {
	in, err := Request(path, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	switch mode {
	case "fail":
		in.Fail(errors.New("config invalid: test says so"))
		os.Exit(1)
	case "die":
		os.Exit(3)
	case "took":
		fmt.Fprintf(os.Stderr, "took %d listeners\n", len(in.Entries()))
		os.Exit(0)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "new") })}
	for _, e := range in.Entries() {
		if e.Name == "c" {
			continue // the new configuration drops listener c
		}
		ln, ok, err := in.Take(e.Name, e.Addr)
		if err != nil || !ok {
			in.Fail(fmt.Errorf("take %s: %v", e.Name, err))
			os.Exit(1)
		}
		go srv.Serve(ln)
	}
	if err := in.Release(5 * time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	if err := in.Serving(); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	io.Copy(io.Discard, os.Stdin)
}

// squat binds path as a running process would and hands one listener to
// whoever connects, until its stdin closes. It prints "listening" once the
// socket accepts connections and its mode is set.
func squat(path string) {
	offer, err := Listen(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "squat:", err)
		os.Exit(2)
	}
	os.Chmod(path, 0o777)
	fmt.Println("listening")
	go func() {
		for {
			tk, err := offer.Accept()
			if err != nil {
				return
			}
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			f, _ := FileOf(ln)
			tk.Send([]Listener{{Entry: Entry{Name: "a", Addr: "127.0.0.1:0"}, File: f}})
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	offer.Close()
}

// oldProcess is the parent's side: three listeners serving "old", one
// of them with a slow path.
type oldProcess struct {
	lns     map[string]net.Listener
	srv     *http.Server
	release chan struct{}
}

func startOld(t *testing.T) *oldProcess {
	t.Helper()
	o := &oldProcess{lns: map[string]net.Listener{}, release: make(chan struct{})}
	o.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-o.release
		}
		io.WriteString(w, "old")
	})}
	for _, name := range []string{"a", "b", "c"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		o.lns[name] = ln
		go o.srv.Serve(ln)
	}
	t.Cleanup(func() { o.srv.Close() })
	return o
}

func (o *oldProcess) entries(t *testing.T) []Listener {
	var ls []Listener
	for _, name := range []string{"a", "b", "c"} {
		f, err := FileOf(o.lns[name])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		ls = append(ls, Listener{Entry: Entry{Name: name, Addr: "127.0.0.1:0", Bound: o.lns[name].Addr().String()}, File: f})
	}
	return ls
}

func startChild(t *testing.T, path, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HANDOFF_CHILD="+path, "HANDOFF_MODE="+mode)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	return cmd
}

func get(addr, path string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func sockPath(t *testing.T) string {
	// Unix socket paths are short (108 bytes); t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "ho")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}

// listenAt binds an offer at a new socket path, closed when the test ends.
func listenAt(t *testing.T) (string, *Offer) {
	t.Helper()
	path := sockPath(t)
	offer, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { offer.Close() })
	return path, offer
}

// TestHandOffToChildProcess: three listeners pass to a child process; it
// takes two and drops one; a request in flight on the old process
// completes after the hand-off; afterwards the new process answers on the
// kept addresses and the dropped one refuses connections.
func TestHandOffToChildProcess(t *testing.T) {
	old := startOld(t)
	path, offer := listenAt(t)

	inflight := make(chan string, 1)
	go func() {
		body, err := get(old.lns["a"].Addr().String(), "/slow")
		if err != nil {
			body = err.Error()
		}
		inflight <- body
	}()

	cmd := startChild(t, path, "")
	tk, err := offer.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if tk.PID != cmd.Process.Pid {
		t.Errorf("successor pid %d, want %d", tk.PID, cmd.Process.Pid)
	}
	sent := old.entries(t)
	if err := tk.Send(sent); err != nil {
		t.Fatal(err)
	}
	if err := tk.AwaitRelease(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := tk.Released(); err != nil {
		t.Fatal(err)
	}
	if err := tk.AwaitServing(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	tk.Close()

	// The old process drains: it closes its copies of the listeners (the
	// successor's keep the sockets open) and serves what it accepted. The
	// stand-in is net/http, so it is not told to shut down yet: its
	// Shutdown drops a request it accepted just before, once read, which
	// made this test flaky. proxy.Server answers such a request (its
	// lifecycle tests).
	for _, ln := range old.lns {
		ln.Close()
	}
	for _, name := range []string{"a", "b"} {
		addr := old.lns[name].Addr().String()
		deadline := time.Now().Add(10 * time.Second)
		for {
			body, err := get(addr, "/")
			if err != nil {
				t.Fatalf("listener %s refused a request during the hand-off: %v", name, err)
			}
			if body == "new" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("listener %s still answered by the old process", name)
			}
		}
	}
	close(old.release)
	if body := <-inflight; body != "old" {
		t.Fatalf("in-flight request: %q", body)
	}
	if err := old.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, l := range sent {
		l.File.Close()
	}
	// c: dropped by the new configuration; with the old copy closed too,
	// nothing listens there any more.
	if _, err := get(old.lns["c"].Addr().String(), "/"); err == nil {
		t.Fatal("dropped listener still accepts")
	}
	if body, err := get(old.lns["b"].Addr().String(), "/"); err != nil || body != "new" {
		t.Fatalf("after the old process closed everything: %q %v", body, err)
	}
}

// TestFailedSuccessor: a successor that reports an error, or dies, leaves
// the old process serving and says why.
func TestFailedSuccessor(t *testing.T) {
	old := startOld(t)
	path, offer := listenAt(t)
	for mode, want := range map[string]string{
		"fail": "peer reported: config invalid: test says so",
		"die":  "successor went away",
	} {
		startChild(t, path, mode)
		tk, err := offer.Accept()
		if err != nil {
			t.Fatal(err)
		}
		tk.Send(old.entries(t))
		err = tk.AwaitRelease(10 * time.Second)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: error %v, want %q", mode, err, want)
		}
		tk.Close()
		if body, err := get(old.lns["a"].Addr().String(), "/"); err != nil || body != "old" {
			t.Fatalf("%s: old process stopped serving: %q %v", mode, body, err)
		}
	}
}

func TestListenRefusesLiveSocketAndReplacesStale(t *testing.T) {
	path := sockPath(t)
	o1, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Listen: %v", err)
	}
	// Accept the probe connection the second Listen made.
	go o1.Accept()
	o1.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left behind: %v", err)
	}
	os.WriteFile(path, nil, 0o600) // stale leftover
	o2, err := Listen(path)
	if err != nil {
		t.Fatalf("stale file not replaced: %v", err)
	}
	o2.Close()
}

// TestGarbageThenSuccessor: a client speaking something else is dropped;
// the real successor is served next.
func TestGarbageThenSuccessor(t *testing.T) {
	old := startOld(t)
	path, offer := listenAt(t)
	g, err := net.Dial("unixpacket", path)
	if err != nil {
		t.Fatal(err)
	}
	g.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	accepted := make(chan *Takeover, 1)
	go func() {
		tk, err := offer.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- tk
	}()
	buf := make([]byte, 1)
	if _, err := g.Read(buf); err == nil {
		t.Fatal("garbage client not disconnected")
	}
	startChild(t, path, "")
	tk := <-accepted
	if tk == nil {
		t.FailNow()
	}
	defer tk.Close()
	tk.Send(old.entries(t))
	if err := tk.AwaitRelease(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestReleasedState: what the old process passes with "released" reaches
// the successor's State; nothing passed reads as nil, and a state that is
// not JSON is refused before it is sent.
func TestReleasedState(t *testing.T) {
	for _, state := range []json.RawMessage{json.RawMessage(`{"caught_up":true,"applied":42}`), nil} {
		path, offer := listenAt(t)
		got := make(chan json.RawMessage, 1)
		errc := make(chan error, 1)
		go func() {
			in, err := Request(path, 5*time.Second)
			if err != nil {
				errc <- err
				return
			}
			if s := in.State(); s != nil {
				errc <- fmt.Errorf("state %s before Release", s)
				return
			}
			if err := in.Release(5 * time.Second); err != nil {
				errc <- err
				return
			}
			got <- in.State()
			errc <- in.Serving()
		}()
		tk, err := offer.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if err := tk.Send(nil); err != nil {
			t.Fatal(err)
		}
		if err := tk.AwaitRelease(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		if err := tk.ReleasedWith(json.RawMessage("{not json")); err == nil {
			t.Fatal("a state that is not JSON was sent")
		}
		if err := tk.ReleasedWith(state); err != nil {
			t.Fatal(err)
		}
		if err := tk.AwaitServing(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		tk.Close()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if s := <-got; string(s) != string(state) {
			t.Fatalf("successor's state %q, want %q", s, state)
		}
	}
}
