package handoff

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxListeners bounds how many sockets one hand-off carries.
const MaxListeners = 64

// maxMessage bounds one control message.
const maxMessage = 64 << 10

// Entry describes one listening socket: the name and configured address
// the old process knew it by, and its bound address.
type Entry struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	Bound string `json:"bound"`
}

// Listener is an Entry and the socket it describes.
type Listener struct {
	Entry
	File *os.File
}

// FileOf returns a duplicate of ln's socket for Offer.Send. ln must be a
// *net.TCPListener or *net.UnixListener.
func FileOf(ln net.Listener) (*os.File, error) {
	type filer interface{ File() (*os.File, error) }
	f, ok := ln.(filer)
	if !ok {
		return nil, fmt.Errorf("handoff: %T has no file descriptor", ln)
	}
	return f.File()
}

// trustedUID reports whether a process running as uid may take this
// process's listeners over, or hand its own to this process: only the
// same user, or root. The socket file's mode (0600) keeps other users from
// connecting to a socket this process bound, but not from connecting in
// the moment between bind and chmod, nor from binding the path first (the
// default path is in the shared temp directory), so each side checks the
// other's credentials as the kernel recorded them.
var trustedUID = func(uid uint32) bool { return uid == 0 || uid == uint32(os.Geteuid()) }

// checkPeer returns an error unless the process at the other end of c is
// trusted (trustedUID).
func checkPeer(c *net.UnixConn) error {
	uid, pid, err := peerUID(c)
	if err != nil {
		return err
	}
	if !trustedUID(uid) {
		return fmt.Errorf("handoff: peer pid %d runs as uid %d, not as this process's user (uid %d) or root", pid, uid, os.Geteuid())
	}
	return nil
}

// checkOwner returns an error when the file at path (not the one a link
// there leads to) belongs to a user trustedUID refuses; none when there is
// no file.
func checkOwner(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && !trustedUID(st.Uid) {
		return fmt.Errorf("handoff: %s belongs to uid %d, another user", path, st.Uid)
	}
	return nil
}

// message is one control message; its type says which fields matter.
type message struct {
	Type      string  `json:"type"` // hello, listeners, release, released, serving, error
	Version   int     `json:"version,omitempty"`
	Listeners []Entry `json:"listeners,omitempty"`
	Error     string  `json:"error,omitempty"`
	PID       int     `json:"pid,omitempty"`
	// Offer, on "serving", says what the successor did with the hand-off
	// socket it was passed: offerKept or offerLeft. Successors that
	// predate passing the socket leave it empty; they bind a new one.
	Offer string `json:"offer,omitempty"`
	// State, on "released", is what the old process tells its successor
	// about the state it released (Takeover.ReleasedWith); opaque here.
	// Successors that predate it ignore the field.
	State json.RawMessage `json:"state,omitempty"`
}

// What a successor did with the passed hand-off socket.
const (
	offerKept = "kept" // it offers the same socket at the same path
	offerLeft = "left" // its configuration names another path
)

// offerEntryName names the hand-off socket in a "listeners" message. Its
// Addr is the socket's path, which no TCP listener's address can equal;
// successors that predate passing the socket ignore the entry and close it.
const offerEntryName = "handoff.offer"

// cacheEntryName names, in a "listeners" message, one end of a stream
// socket pair whose other end the old process keeps (Takeover.CacheConn):
// what it writes there reaches only the successor it passed the end to,
// over the hand-off socket whose peer was checked. Successors that predate
// it ignore the entry and close it.
const cacheEntryName = "handoff.cache"

// streamPair returns the two ends of a new connected stream socket pair:
// this process's as a net.Conn, the other as a file to pass.
func streamPair() (net.Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("handoff: socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "handoff-cache")
	defer mine.Close() // FileConn holds its own duplicate
	c, err := net.FileConn(mine)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("handoff: %w", err)
	}
	return c, os.NewFile(uintptr(fds[1]), "handoff-cache"), nil
}

const protocolVersion = 1

// conn wraps a SOCK_SEQPACKET connection: one message per packet, with
// the file descriptors of a "listeners" message attached to it.
type conn struct {
	c *net.UnixConn
}

func (c conn) send(m message, files []*os.File, timeout time.Duration) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			// Not f.Fd(): it would switch the shared open file description,
			// and with it the live listener, to blocking mode.
			rc, err := f.SyscallConn()
			if err != nil {
				return err
			}
			if err := rc.Control(func(fd uintptr) { fds[i] = int(fd) }); err != nil {
				return err
			}
		}
		oob = unix.UnixRights(fds...)
	}
	c.c.SetWriteDeadline(time.Now().Add(timeout))
	_, _, err = c.c.WriteMsgUnix(b, oob, nil)
	return err
}

func (c conn) recv(timeout time.Duration) (message, []*os.File, error) {
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(MaxListeners*4))
	if timeout > 0 {
		c.c.SetReadDeadline(time.Now().Add(timeout))
	} else {
		c.c.SetReadDeadline(time.Time{})
	}
	n, oobn, flags, _, err := c.c.ReadMsgUnix(buf, oob)
	if err != nil {
		return message{}, nil, err
	}
	files, ferr := parseRights(oob[:oobn])
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(files)
		return message{}, nil, errors.New("handoff: control message truncated")
	}
	if ferr != nil {
		closeAll(files)
		return message{}, nil, ferr
	}
	if n == 0 {
		closeAll(files)
		return message{}, nil, errors.New("handoff: peer closed the connection")
	}
	var m message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		closeAll(files)
		return message{}, nil, fmt.Errorf("handoff: bad control message: %w", err)
	}
	return m, files, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "inherited"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// errorFrom turns an "error" message into an error.
func errorFrom(m message, want string) error {
	if m.Type == "error" {
		return &PeerError{Msg: m.Error}
	}
	return fmt.Errorf("handoff: got %q, want %q", m.Type, want)
}

// PeerError is a failure the other process reported.
type PeerError struct{ Msg string }

func (e *PeerError) Error() string { return "handoff: peer reported: " + e.Msg }
