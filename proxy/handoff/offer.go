package handoff

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Offer is the running process's side: a Unix socket a successor connects
// to. Only one successor is served at a time.
//
// The socket outlives the process that bound it: each hand-off passes it
// to the successor with the listeners, and the successor offers the same
// socket at the same path (Inherited.TakeOffer). No process of the chain
// removes and re-binds the path, so an old process that drains while its
// successor (or a later one) serves cannot remove the successor's socket,
// and an upgrade requested while a hand-off is still running waits in the
// socket's queue for the process that serves next.
type Offer struct {
	ln   *net.UnixListener
	path string
	file os.FileInfo // the socket file as bound or inherited, to recognise it at Close

	mu       sync.Mutex
	own      bool        // Close removes the socket file (if it is still o.file)
	rejected func(error) // OnReject's
}

// OnReject sets a function Accept calls with the reason whenever it turns
// away a connection from a process of another user (which is never
// passed a socket). Call it before Accept.
func (o *Offer) OnReject(f func(error)) {
	o.mu.Lock()
	o.rejected = f
	o.mu.Unlock()
}

func (o *Offer) reject(err error) {
	o.mu.Lock()
	f := o.rejected
	o.mu.Unlock()
	if f != nil {
		f(err)
	}
}

// Listen binds the hand-off socket at path (mode 0600). A stale socket
// file (nothing accepts on it) is replaced; one that a live process still
// answers on, or a file of another user, is an error.
func Listen(path string) (*Offer, error) {
	// Another user's file (a socket, a link, anything) in a shared
	// directory: never connect to it, remove it or bind beside it.
	if err := checkOwner(path); err != nil {
		return nil, fmt.Errorf("%w: not replacing it", err)
	}
	if _, err := os.Stat(path); err == nil {
		c, err := net.DialTimeout("unixpacket", path, time.Second)
		switch {
		case err == nil:
			c.Close()
			return nil, fmt.Errorf("handoff: %s is in use by a running process", path)
		case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOENT):
			os.Remove(path) // stale: its process is gone
		default:
			// A full accept queue (EAGAIN) or a timeout is a live socket
			// too: never remove what might be another process's.
			return nil, fmt.Errorf("handoff: %s exists and its owner is unknown: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	ln.SetUnlinkOnClose(false) // Close removes the file only if it is still ours
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("handoff: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("handoff: %w", err)
	}
	return &Offer{ln: ln, path: path, file: fi, own: true}, nil
}

// Path returns the socket's path.
func (o *Offer) Path() string { return o.path }

// helloTimeout bounds the wait for a connection's greeting. A successor
// sends it as soon as it has connected, before it reads anything, so it is
// queued with the connection; a client that connects and says nothing
// holds up the successors queued behind it (which wait for their
// listeners only as long as their own timeout) no longer than this.
const helloTimeout = time.Second

// Accept waits for a successor and reads its greeting.
func (o *Offer) Accept() (*Takeover, error) {
	for {
		c, err := o.ln.AcceptUnix()
		if err != nil {
			return nil, err
		}
		if err := checkPeer(c); err != nil {
			c.Close() // another user's process: never pass it a socket
			o.reject(err)
			continue
		}
		t := &Takeover{c: conn{c}, o: o}
		m, files, err := t.c.recv(helloTimeout)
		closeAll(files)
		if err != nil || m.Type != "hello" || m.Version != protocolVersion {
			c.Close() // not a successor speaking our protocol; wait for the next
			continue
		}
		t.PID = m.PID
		return t, nil
	}
}

func (o *Offer) setOwn(own bool) {
	o.mu.Lock()
	o.own = own
	o.mu.Unlock()
}

// Close stops offering. The socket file is removed only while this
// process owns the socket: it bound it, or took it over and served, and
// has not passed it on to a successor that keeps it. A file that is not
// the one this process bound or took over is left alone.
func (o *Offer) Close() error {
	o.mu.Lock()
	own := o.own
	o.own = false
	o.mu.Unlock()
	if own {
		// Checked and removed while the socket still accepts: until it
		// closes, Listen in another process sees a live socket and
		// refuses, and a successor takes this socket over instead of
		// binding one, so no cooperating process replaces the file
		// between the check and the removal.
		if fi, err := os.Stat(o.path); err == nil && os.SameFile(fi, o.file) {
			os.Remove(o.path)
		}
	}
	return o.ln.Close()
}

// Takeover is one successor taking over from this process.
type Takeover struct {
	c conn
	o *Offer
	// PID is the successor's process id, as it reported it.
	PID int

	cache net.Conn // this end of the cache stream Send passed, until CacheConn
}

// Send passes the listeners, the hand-off socket itself and one end of a
// new stream socket pair (CacheConn keeps the other); the files stay open
// here (the caller keeps serving on them until the successor is serving).
func (t *Takeover) Send(ls []Listener) error {
	if len(ls) > MaxListeners-2 {
		return fmt.Errorf("handoff: %d listeners, at most %d", len(ls), MaxListeners-2)
	}
	self, err := FileOf(t.o.ln)
	if err != nil {
		return err
	}
	defer self.Close()
	ls = append(ls[:len(ls):len(ls)], Listener{Entry: Entry{Name: offerEntryName, Addr: t.o.path, Bound: t.o.path}, File: self})
	mine, theirs, err := streamPair()
	if err != nil {
		return err
	}
	defer theirs.Close() // the successor has its own copy once sent
	ls = append(ls, Listener{Entry: Entry{Name: cacheEntryName}, File: theirs})
	if t.cache != nil {
		t.cache.Close()
	}
	t.cache = mine
	m := message{Type: "listeners", Version: protocolVersion}
	files := make([]*os.File, len(ls))
	for i, l := range ls {
		m.Listeners = append(m.Listeners, l.Entry)
		files[i] = l.File
	}
	return t.c.send(m, files, 5*time.Second)
}

// AwaitRelease waits until the successor asks for the process's state
// (data directory, cluster identity): it has validated its configuration
// and taken its listeners.
func (t *Takeover) AwaitRelease(timeout time.Duration) error {
	_, err := t.await("release", timeout)
	return err
}

// Released tells the successor the state is free.
func (t *Takeover) Released() error { return t.ReleasedWith(nil) }

// ReleasedWith tells the successor the state is free, and passes it
// state: what the successor should know about it, for example that the
// old process had caught up with its cluster when it let go (see
// Inherited.State). state must be JSON, or nil.
func (t *Takeover) ReleasedWith(state json.RawMessage) error {
	if state != nil && !json.Valid(state) {
		return errors.New("handoff: released state is not JSON")
	}
	return t.c.send(message{Type: "released", State: state}, nil, 5*time.Second)
}

// AwaitServing waits until the successor accepts connections. The
// hand-off socket is then the successor's, unless its configuration names
// another path: this process then still owns its socket file and removes
// it at Close.
func (t *Takeover) AwaitServing(timeout time.Duration) error {
	m, err := t.await("serving", timeout)
	if err == nil && m.Offer != offerLeft {
		// Kept, or a successor that predates passing the socket: it
		// replaced the file with its own, which Close must not remove.
		t.o.setOwn(false)
	}
	return err
}

func (t *Takeover) await(want string, timeout time.Duration) (message, error) {
	m, files, err := t.c.recv(timeout)
	closeAll(files)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return m, fmt.Errorf("handoff: successor did not report %q within %v", want, timeout)
		}
		return m, fmt.Errorf("handoff: successor went away before %q: %w", want, err)
	}
	if m.Type != want {
		return m, errorFrom(m, want)
	}
	return m, nil
}

// CacheConn returns this process's end of the stream socket Send passed
// to the successor, which reads the other end (Inherited.CacheConn): the
// process writes what the successor should inherit beyond the listeners
// (its cache) there. The caller owns it from now on (Close leaves it
// open); nil before Send, or on the second call.
func (t *Takeover) CacheConn() net.Conn {
	c := t.cache
	t.cache = nil
	return c
}

// Close ends the conversation, and closes the cache stream unless
// CacheConn took it.
func (t *Takeover) Close() error {
	if t.cache != nil {
		t.cache.Close()
		t.cache = nil
	}
	return t.c.c.Close()
}
