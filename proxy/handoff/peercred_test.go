package handoff

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// distrust makes every peer another user's for the rest of the test.
func distrust(t *testing.T) {
	var deny atomic.Bool
	deny.Store(true)
	prev := trustedUID
	trustedUID = func(uid uint32) bool { return !deny.Load() && prev(uid) }
	t.Cleanup(func() { trustedUID = prev })
}

// rawHello connects to path and greets as a successor would, without
// checking who listens (the greeting may find the connection closed).
func rawHello(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.Dial("unixpacket", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	b, _ := json.Marshal(message{Type: "hello", Version: protocolVersion, PID: 1})
	c.Write(b)
	return c.(*net.UnixConn)
}

// TestOfferRefusesAnotherUser: a connection from another user's process
// is closed before it is passed anything, the reason goes to OnReject,
// and Accept waits for the next connection.
func TestOfferRefusesAnotherUser(t *testing.T) {
	distrust(t)
	path, offer := listenAt(t)
	rejected := make(chan error, 1)
	offer.OnReject(func(err error) { rejected <- err })
	accepted := make(chan *Takeover, 1)
	go func() {
		tk, err := offer.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		// A hello got through: pass it a listener, as a hand-off would.
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		defer ln.Close()
		f, _ := FileOf(ln)
		defer f.Close()
		tk.Send([]Listener{{Entry: Entry{Name: "http", Addr: "127.0.0.1:0"}, File: f}})
		accepted <- tk
	}()
	c := rawHello(t, path)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf, oob := make([]byte, maxMessage), make([]byte, 1024)
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if n > 0 || oobn > 0 {
		t.Fatalf("another user's process was sent %q with %d bytes of sockets", buf[:max(n, 0)], oobn)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("another user's connection was left open")
	}
	select {
	case err := <-rejected:
		if !strings.Contains(err.Error(), "uid") {
			t.Fatalf("reject reason %q names no uid", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnReject not called")
	}
	select {
	case tk := <-accepted:
		t.Fatalf("Accept returned %v for another user's connection", tk)
	default:
	}
	offer.Close()
	if tk := <-accepted; tk != nil {
		t.Fatal("Accept returned a takeover after Close")
	}
}

// TestRequestRefusesAnotherUsersSocket: a socket another user bound at
// the path (the default path is in the shared temp directory) is not
// taken over from: Request fails before it sends its greeting.
// TestAnotherUserCannotTakeOver checks each of the two checks alone.
func TestRequestRefusesAnotherUsersSocket(t *testing.T) {
	distrust(t)
	path := sockPath(t)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	heard := make(chan []byte, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			heard <- nil
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, maxMessage)
		n, _ := c.Read(buf)
		heard <- buf[:n]
	}()
	_, err = Request(path, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "uid") {
		t.Fatalf("Request from another user's socket: %v, want a refusal naming the uid", err)
	}
	ln.Close() // if Request did not even connect
	if b := <-heard; len(b) != 0 {
		t.Fatalf("the squatter heard %q", b)
	}
}

// TestAnotherUserCannotTakeOver runs a real process as another user
// ("nobody", uid 65534; root only): it can neither take the listeners
// from a socket it can connect to (mode 0666: the moment between bind and
// chmod, or a permissive directory), nor hand its own to a successor, nor
// lead one to a socket of this user with a link.
func TestAnotherUserCannotTakeOver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	const nobody = 65534
	// The test binary, where nobody may run it.
	dir, err := os.MkdirTemp("", "hou")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	exe := filepath.Join(dir, "t")
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, src, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func(mode, path string) *exec.Cmd {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), "HANDOFF_CHILD="+path, "HANDOFF_MODE="+mode)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		return cmd
	}

	t.Run("takes", func(t *testing.T) {
		path := filepath.Join(dir, "s")
		offer, err := Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		defer offer.Close()
		os.Chmod(path, 0o666)
		rejected := make(chan error, 1)
		offer.OnReject(func(err error) { rejected <- err })
		go func() {
			if tk, err := offer.Accept(); err == nil {
				old := startOld(t)
				tk.Send(old.entries(t))
				tk.Close()
			}
		}()
		out, err := asNobody("took", path).CombinedOutput()
		if err == nil || strings.Contains(string(out), "took") {
			t.Fatalf("a process of another user took the listeners over: %v\n%s", err, out)
		}
		select {
		case err := <-rejected:
			t.Log(err)
		case <-time.After(10 * time.Second):
			t.Fatal("not rejected")
		}
	})
	t.Run("links", func(t *testing.T) {
		// A link another user put at the path, to a socket of this
		// user that serves something else (another node's).
		other := filepath.Join(t.TempDir(), "other")
		offer, err := Listen(other)
		if err != nil {
			t.Fatal(err)
		}
		defer offer.Close()
		accepted := make(chan *Takeover, 1)
		go func() {
			tk, _ := offer.Accept()
			accepted <- tk
		}()
		path := filepath.Join(dir, "l")
		ln := exec.Command("ln", "-s", other, path)
		ln.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		if out, err := ln.CombinedOutput(); err != nil {
			t.Fatalf("ln as nobody: %v %s", err, out)
		}
		in, err := Request(path, 10*time.Second)
		if err == nil {
			in.Fail(errors.New("test"))
			t.Fatal("followed another user's link to a socket of this user")
		}
		t.Log(err)
		offer.Close()
		if tk := <-accepted; tk != nil {
			tk.Close()
			t.Fatal("the socket behind the link was greeted")
		}
	})
	t.Run("squats", func(t *testing.T) {
		path := filepath.Join(dir, "q")
		sq := asNobody("squat", path)
		stdin, _ := sq.StdinPipe()
		stdout, _ := sq.StdoutPipe()
		var stderr strings.Builder
		sq.Stderr = &stderr
		if err := sq.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { stdin.Close(); sq.Wait() }()
		// The file appears at bind, before the squatter listens and sets
		// its mode (Listen's chmod, which fails once the file is this
		// user's): wait for the squatter to say it listens.
		ready := make(chan string, 1)
		go func() {
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			ready <- line
		}()
		select {
		case line := <-ready:
			if line != "listening\n" {
				stdin.Close()
				sq.Wait()
				t.Fatalf("squatter did not listen: %q %s", line, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("squatter did not listen within 10s")
		}
		// The file is this user's (as if the squatter had bound it in a
		// directory of this user's): only the peer's credentials tell.
		if err := os.Lchown(path, os.Geteuid(), os.Getegid()); err != nil {
			t.Fatal(err)
		}
		in, err := Request(path, 10*time.Second)
		if err == nil {
			in.Fail(errors.New("test"))
			t.Fatalf("took over from another user's process: %+v", in.Entries())
		}
		if !strings.Contains(err.Error(), "peer pid") {
			t.Fatalf("refused for another reason: %v", err)
		}
		t.Log(err)
	})
}

// TestListenRefusesAnotherUsersFile: a file another user put at the path
// is neither replaced nor probed; the error names its owner.
func TestListenRefusesAnotherUsersFile(t *testing.T) {
	distrust(t)
	path := sockPath(t)
	os.WriteFile(path, nil, 0o600)
	o, err := Listen(path)
	if err == nil {
		o.Close()
		t.Fatal("another user's file replaced")
	}
	if !strings.Contains(err.Error(), "uid") {
		t.Fatalf("error %q names no uid", err)
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the file is gone: %v", err)
	}
}

// TestStalledClientsDoNotStarveSuccessor: clients that connect and say
// nothing hold the offer up only briefly each; a successor queued behind
// three of them still gets its listeners within its own 5 s timeout.
func TestStalledClientsDoNotStarveSuccessor(t *testing.T) {
	old := startOld(t)
	path, offer := listenAt(t)
	for i := 0; i < 3; i++ {
		c, err := net.Dial("unixpacket", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	go func() {
		tk, err := offer.Accept()
		if err != nil {
			return
		}
		defer tk.Close()
		tk.Send(old.entries(t))
		tk.AwaitRelease(10 * time.Second)
	}()
	in, err := Request(path, 5*time.Second)
	if err != nil {
		t.Fatalf("successor behind stalled clients: %v", err)
	}
	in.Fail(errors.New("test done"))
}
