package handoff

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// Inherited is the successor's side: the listeners the old process passed.
type Inherited struct {
	c     conn
	ls    []Listener
	taken []bool
	done  bool

	offerAt int    // index in ls of the old process's hand-off socket, or -1
	cacheAt int    // index in ls of the cache stream, or -1
	offer   *Offer // that socket, once TakeOffer took it

	state json.RawMessage // passed with "released" (State)
}

// Request connects to the running process at path and receives its
// listeners.
func Request(path string, timeout time.Duration) (*Inherited, error) {
	// A link or socket another user put at the path (the default path is
	// in the shared temp directory) may lead to another process of this
	// user, one that serves another node: never follow it.
	if err := checkOwner(path); err != nil {
		return nil, fmt.Errorf("handoff: not taking over from the process at %s: %w", path, err)
	}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.Dial("unixpacket", path)
	if err != nil {
		return nil, fmt.Errorf("handoff: no running process to take over from at %s: %w", path, err)
	}
	c := conn{nc.(*net.UnixConn)}
	if err := checkPeer(c.c); err != nil {
		// Another user bound the path (the default one is in the
		// shared temp directory): it would hand this process sockets
		// of its choosing and learn when it serves.
		nc.Close()
		return nil, fmt.Errorf("handoff: not taking over from the process at %s: %w", path, err)
	}
	if err := c.send(message{Type: "hello", Version: protocolVersion, PID: os.Getpid()}, nil, timeout); err != nil {
		nc.Close()
		return nil, fmt.Errorf("handoff: %w", err)
	}
	m, files, err := c.recv(timeout)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("handoff: receiving listeners: %w", err)
	}
	if m.Type != "listeners" || len(files) != len(m.Listeners) {
		closeAll(files)
		nc.Close()
		if m.Type != "listeners" {
			return nil, errorFrom(m, "listeners")
		}
		return nil, fmt.Errorf("handoff: %d sockets for %d listeners", len(files), len(m.Listeners))
	}
	in := &Inherited{c: c, taken: make([]bool, len(files)), offerAt: -1, cacheAt: -1}
	for i, e := range m.Listeners {
		in.ls = append(in.ls, Listener{Entry: e, File: files[i]})
		switch e.Name {
		case offerEntryName:
			in.offerAt = i
		case cacheEntryName:
			in.cacheAt = i
		}
	}
	return in, nil
}

// Entries lists the listeners that were passed (not the hand-off socket).
func (in *Inherited) Entries() []Entry {
	out := make([]Entry, 0, len(in.ls))
	for i, l := range in.ls {
		if i != in.offerAt && i != in.cacheAt {
			out = append(out, l.Entry)
		}
	}
	return out
}

// CacheConn returns the stream the old process writes what this one
// inherits beyond the listeners (Takeover.CacheConn), or nil when it
// passed none (a version that predates it) or on the second call. Only
// the old process holds its other end. The caller owns it.
func (in *Inherited) CacheConn() net.Conn {
	if in == nil || in.cacheAt < 0 || in.taken[in.cacheAt] {
		return nil
	}
	in.taken[in.cacheAt] = true
	f := in.ls[in.cacheAt].File
	defer f.Close() // FileConn holds its own duplicate
	c, err := net.FileConn(f)
	if err != nil {
		return nil
	}
	return c
}

// PassedOffer reports whether the old process passed its hand-off socket.
// One that predates passing it still listens on its own socket file until
// it exits: the caller replaces that file after Serving.
func (in *Inherited) PassedOffer() bool { return in != nil && in.offerAt >= 0 }

// TakeOffer returns the old process's hand-off socket, to offer this
// process's own successor the same socket at the same path; false when it
// was not passed or is bound at another path than path (the caller binds
// one with Listen after Serving). Call it before Serving, which tells the
// old process the socket is kept; from then on it is this process's, and
// its Close removes the file. Before that, Close leaves the file to the
// old process.
func (in *Inherited) TakeOffer(path string) (*Offer, bool, error) {
	if !in.PassedOffer() || in.taken[in.offerAt] || in.ls[in.offerAt].Addr != path {
		return nil, false, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, nil // the file is gone: nobody could connect to it
	}
	l := in.ls[in.offerAt]
	ln, err := net.FileListener(l.File)
	if err != nil {
		return nil, false, fmt.Errorf("handoff: hand-off socket %s: %w", path, err)
	}
	uln, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil, false, fmt.Errorf("handoff: hand-off socket %s is a %T", path, ln)
	}
	uln.SetUnlinkOnClose(false)
	in.taken[in.offerAt] = true
	l.File.Close() // FileListener holds its own duplicate
	in.offer = &Offer{ln: uln, path: path, file: fi}
	return in.offer, true, nil
}

// Take returns the inherited listener configured under name at addr, or
// false when the old process had none: the caller binds it afresh. A
// listener whose address changed is not taken.
func (in *Inherited) Take(name, addr string) (net.Listener, bool, error) {
	if in == nil {
		return nil, false, nil
	}
	for i, l := range in.ls {
		if in.taken[i] || i == in.offerAt || i == in.cacheAt || l.Name != name || l.Addr != addr {
			continue
		}
		ln, err := net.FileListener(l.File)
		if err != nil {
			return nil, false, fmt.Errorf("handoff: listener %q: %w", name, err)
		}
		in.taken[i] = true
		l.File.Close() // FileListener holds its own duplicate
		return ln, true, nil
	}
	return nil, false, nil
}

// Release asks the old process to give up its state and waits until it
// has.
func (in *Inherited) Release(timeout time.Duration) error {
	if err := in.c.send(message{Type: "release"}, nil, timeout); err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	m, files, err := in.c.recv(timeout)
	closeAll(files)
	if err != nil {
		return fmt.Errorf("handoff: waiting for the old process to release its state: %w", err)
	}
	if m.Type != "released" {
		return errorFrom(m, "released")
	}
	in.state = m.State
	return nil
}

// State is what the old process passed when it released its state
// (Takeover.ReleasedWith): nil before Release, or when it passed nothing
// (an old process that predates it, too).
func (in *Inherited) State() json.RawMessage {
	if in == nil {
		return nil
	}
	return in.state
}

// Serving tells the old process this one accepts connections, so it may
// drain and exit. Listeners not taken are closed here; the old process
// closes its own copies as it drains.
func (in *Inherited) Serving() error {
	if in == nil || in.done {
		return nil
	}
	in.done = true
	in.closeUntaken()
	m := message{Type: "serving"}
	if in.PassedOffer() {
		m.Offer = offerLeft
		if in.offer != nil {
			m.Offer = offerKept
		}
	}
	err := in.c.send(m, nil, 5*time.Second)
	in.c.c.Close()
	if err == nil && in.offer != nil {
		in.offer.setOwn(true)
	}
	return err
}

// Fail tells the old process the take-over failed and why; it keeps
// serving. Every inherited socket not yet taken is closed.
func (in *Inherited) Fail(reason error) {
	if in == nil || in.done {
		return
	}
	in.done = true
	in.closeUntaken()
	if reason == nil {
		reason = errors.New("successor failed")
	}
	in.c.send(message{Type: "error", Error: reason.Error()}, nil, 2*time.Second)
	in.c.c.Close()
}

func (in *Inherited) closeUntaken() {
	for i, l := range in.ls {
		if !in.taken[i] {
			l.File.Close()
		}
	}
}
