package node

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// inUse adds to a bind error that found the address taken what an
// operator does about it: which setting (and flag) chose the address, and
// that the usual holder is another node on the same host (a second
// pingora-node started with the same node file, or a node that has not
// finished stopping). Other errors are returned as they are.
func inUse(err error, setting, flag string) error {
	// memberlist formats its bind error with %v: the text is all there is.
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) && !strings.Contains(err.Error(), syscall.EADDRINUSE.Error()) {
		return err
	}
	return fmt.Errorf("%w: another process listens there (often another pingora-node on this host, started with the same node file, or one still stopping: ss -ltnp shows which); stop it, or give this node another address with %s (flag %s)",
		err, setting, flag)
}
