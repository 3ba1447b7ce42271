package handoff

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerUID returns the user id of the process at the other end of c: the
// one that connected (on the offering side) or the one that listens (on
// the successor's side), as the kernel recorded it (SO_PEERCRED).
func peerUID(c *net.UnixConn) (uint32, int32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if cerr != nil {
		return 0, 0, fmt.Errorf("handoff: peer credentials: %w", cerr)
	}
	return cred.Uid, cred.Pid, nil
}
