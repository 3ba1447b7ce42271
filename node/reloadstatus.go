package node

import (
	"time"
)

// ReloadStatus is the outcome of the node's last reload (SIGHUP), shown
// in /status (node.last_reload) and by "pingora-node status": a reload
// refused on one host of a shared node file was only a log line, and the
// node's status said nothing of it.
type ReloadStatus struct {
	At time.Time `json:"at"`
	// Result is "applied", "refused" (nothing changed) or "handed_off"
	// (a successor process applies the node file).
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
	// Warning is what applied but may not be what the operator meant: an
	// edited cluster_config file that the replicated config ignores.
	Warning string `json:"warning,omitempty"`
}

// NoteReload records a reload's outcome that the caller decided (a node
// file refused before the node saw it, a hand-off to a new process).
func (n *Node) NoteReload(result string, err error) { n.noteReload(result, err, "") }

func (n *Node) noteReload(result string, err error, warning string) {
	r := &ReloadStatus{At: time.Now().UTC(), Result: result, Warning: warning}
	if err != nil {
		r.Error = err.Error()
	}
	n.lastReload.Store(r)
}
