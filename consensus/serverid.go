package consensus

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// serverIDFile records, in DataDir, the server ID the raft state belongs
// to. A data dir started under another ID (a typo in a host's --name, a
// data dir copied from another host) would otherwise take the old
// server's place at its address silently: the leader replaces a dead
// server that another ID now answers for, and the cluster loses the name
// it knew without anyone asking for it.
const serverIDFile = "SERVER_ID"

// IDMismatchError is New's answer to a data dir that holds another
// server's raft state.
type IDMismatchError struct {
	DataDir, Have, Want string
}

func (e *IDMismatchError) Error() string {
	return fmt.Sprintf("consensus: data dir %s holds the raft state of server %q, not %q", e.DataDir, e.Have, e.Want)
}

// checkServerID refuses raft state recorded under another ID and records
// this one: always when the dir holds no state (a new server, or state of
// a server that is gone), and for state from a version that did not
// record it.
func (s *Store) checkServerID() error {
	path := filepath.Join(s.cfg.DataDir, serverIDFile)
	have, err := os.ReadFile(path)
	switch {
	case err == nil:
		have = bytes.TrimSpace(have)
		if string(have) == s.cfg.ID {
			return nil
		}
		if s.hasState && len(have) > 0 {
			return &IDMismatchError{DataDir: s.cfg.DataDir, Have: string(have), Want: s.cfg.ID}
		}
	case !os.IsNotExist(err):
		return fmt.Errorf("consensus: read %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s.cfg.ID+"\n"), 0o600); err != nil {
		return fmt.Errorf("consensus: record the server ID: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("consensus: record the server ID: %w", err)
	}
	return nil
}
