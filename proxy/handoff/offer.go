package handoff

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// Offer is the running process's side: a Unix socket a successor connects
// to. Only one successor is served at a time.
type Offer struct {
	ln   *net.UnixListener
	path string
	file os.FileInfo // the socket file as bound, to recognise it at Close
}

// Listen binds the hand-off socket at path (mode 0600). A stale socket
// file is replaced; one that a live process still answers on is an error.
func Listen(path string) (*Offer, error) {
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unixpacket", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("handoff: %s is in use by a running process", path)
		}
		os.Remove(path)
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
	return &Offer{ln: ln, path: path, file: fi}, nil
}

// Path returns the socket's path.
func (o *Offer) Path() string { return o.path }

// Accept waits for a successor and reads its greeting.
func (o *Offer) Accept() (*Takeover, error) {
	for {
		c, err := o.ln.AcceptUnix()
		if err != nil {
			return nil, err
		}
		t := &Takeover{c: conn{c}}
		m, files, err := t.c.recv(10 * time.Second)
		closeAll(files)
		if err != nil || m.Type != "hello" || m.Version != protocolVersion {
			c.Close() // not a successor speaking our protocol; wait for the next
			continue
		}
		t.PID = m.PID
		return t, nil
	}
}

// Close stops offering. The socket file is removed unless a successor has
// already replaced it with its own.
func (o *Offer) Close() error {
	// After a successor bound the path anew the file is not ours to remove.
	fi, err := os.Stat(o.path)
	mine := err == nil && os.SameFile(fi, o.file)
	err = o.ln.Close()
	if mine {
		os.Remove(o.path)
	}
	return err
}

// Takeover is one successor taking over from this process.
type Takeover struct {
	c conn
	// PID is the successor's process id, as it reported it.
	PID int
}

// Send passes the listeners; the files stay open here (the caller keeps
// serving on them until the successor is serving).
func (t *Takeover) Send(ls []Listener) error {
	if len(ls) > MaxListeners {
		return fmt.Errorf("handoff: %d listeners, at most %d", len(ls), MaxListeners)
	}
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
	return t.await("release", timeout)
}

// Released tells the successor the state is free.
func (t *Takeover) Released() error {
	return t.c.send(message{Type: "released"}, nil, 5*time.Second)
}

// AwaitServing waits until the successor accepts connections.
func (t *Takeover) AwaitServing(timeout time.Duration) error {
	return t.await("serving", timeout)
}

func (t *Takeover) await(want string, timeout time.Duration) error {
	m, files, err := t.c.recv(timeout)
	closeAll(files)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("handoff: successor did not report %q within %v", want, timeout)
		}
		return fmt.Errorf("handoff: successor went away before %q: %w", want, err)
	}
	if m.Type != want {
		return errorFrom(m, want)
	}
	return nil
}

// Close ends the conversation.
func (t *Takeover) Close() error { return t.c.c.Close() }
