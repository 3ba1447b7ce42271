package consensus

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/pingora-go/pingora-go/internal/msgpackx"
)

// Doc is one version of a replicated document. Content is shared with the
// store's state: callers must not modify it.
type Doc struct {
	Name    string    `json:"name" msgpack:"name"`
	Version int64     `json:"version" msgpack:"version"`
	Content []byte    `json:"content" msgpack:"content"`
	Time    time.Time `json:"time" msgpack:"time"`   // when the write arrived, by the proposing node's clock
	Node    string    `json:"node" msgpack:"node"`   // ID of the node the write arrived on
	Index   uint64    `json:"index" msgpack:"index"` // raft log index that committed it
}

// cmdPut is the type byte of a put command; an unknown type byte is an
// error (returned to the proposer) and never a panic.
const cmdPut byte = 1

// putCmd is the log entry of a write. Time and node are fixed by the
// proposer so that every FSM applies the same bytes to the same state.
type putCmd struct {
	Name      string    `msgpack:"name"`
	Content   []byte    `msgpack:"content"`
	IfVersion int64     `msgpack:"if_version"` // -1: unconditional
	Time      time.Time `msgpack:"time"`
	Node      string    `msgpack:"node"`
}

func encodeCmd(c putCmd) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte(cmdPut)
	if err := msgpack.NewEncoder(&b).Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func decodeCmd(data []byte) (putCmd, error) {
	var c putCmd
	if len(data) == 0 || data[0] != cmdPut {
		return c, fmt.Errorf("consensus: unknown command type in log entry")
	}
	err := msgpackx.Unmarshal(data[1:], &c)
	return c, err
}

// applyResult is what FSM.Apply returns to the proposer's future.
type applyResult struct {
	Doc       Doc
	ClusterID string // after a cluster ID command: the cluster's ID
	Err       error
}

// docState is the FSM state: documents by name (oldest version first),
// the cluster's identity and the raft index of the last applied command.
type docState struct {
	Index     uint64           `msgpack:"index"`
	Docs      map[string][]Doc `msgpack:"docs"`
	ClusterID string           `msgpack:"cluster_id,omitempty"` // see clusterid.go
}

// put is the pure, deterministic step of the FSM.
func (s *docState) put(c putCmd, index uint64, maxHistory int) applyResult {
	hist := s.Docs[c.Name]
	var cur int64
	if n := len(hist); n > 0 {
		cur = hist[n-1].Version
	}
	if c.IfVersion >= 0 && c.IfVersion != cur {
		return applyResult{Err: &ConflictError{Name: c.Name, Want: c.IfVersion, Current: cur}}
	}
	d := Doc{Name: c.Name, Version: cur + 1, Content: c.Content, Time: c.Time, Node: c.Node, Index: index}
	hist = append(hist[:len(hist):len(hist)], d) // copy-on-write: snapshots share old slices
	if len(hist) > maxHistory {
		hist = hist[len(hist)-maxHistory:]
	}
	if s.Docs == nil {
		s.Docs = map[string][]Doc{}
	}
	s.Docs[c.Name] = hist
	return applyResult{Doc: d}
}

// latest returns the newest version of every document in commit order.
func (s *docState) latest() []Doc {
	out := make([]Doc, 0, len(s.Docs))
	for _, h := range s.Docs {
		if len(h) > 0 {
			out = append(out, h[len(h)-1])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// fsm is the raft FSM. Its state is also persisted to DataDir after each
// applied write, so that a restarted node serves its last applied documents
// before raft knows the commit index (raft does not persist it). Entries and
// snapshots at or below the persisted index are skipped: they are a prefix of
// the same committed log.
type fsm struct {
	path       string
	maxHistory int
	log        *slog.Logger
	notify     func(Doc)

	mu sync.RWMutex
	st docState
}

var _ raft.FSM = (*fsm)(nil)

// testHookFSMApply, when set by a test, runs in the FSM's goroutine
// before it applies an entry.
var testHookFSMApply func(f *fsm)

func (f *fsm) Apply(l *raft.Log) any {
	if testHookFSMApply != nil {
		testHookFSMApply(f)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if l.Index <= f.st.Index {
		return applyResult{Err: fmt.Errorf("consensus: entry %d already applied", l.Index)}
	}
	if len(l.Data) > 0 && l.Data[0] == cmdClusterID {
		res, changed := f.st.setClusterID(l.Data)
		f.st.Index = l.Index
		if changed {
			f.persistLocked()
		}
		return res
	}
	c, err := decodeCmd(l.Data)
	if err != nil {
		f.st.Index = l.Index
		return applyResult{Err: err}
	}
	res := f.st.put(c, l.Index, f.maxHistory)
	f.st.Index = l.Index
	if res.Err == nil {
		f.persistLocked()
		f.notify(res.Doc)
	}
	return res
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{st: f.st.clone()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st docState
	if err := msgpack.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("consensus: decode snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st.Index <= f.st.Index {
		return nil // our persisted state is newer or equal
	}
	old := f.st
	f.st = st
	f.persistLocked()
	for _, d := range st.latest() {
		if h := old.Docs[d.Name]; len(h) == 0 || h[len(h)-1].Version != d.Version {
			f.notify(d)
		}
	}
	return nil
}

func (s docState) clone() docState {
	c := docState{Index: s.Index, Docs: make(map[string][]Doc, len(s.Docs)), ClusterID: s.ClusterID}
	for k, v := range s.Docs {
		c.Docs[k] = v // version slices are copy-on-write
	}
	return c
}

// persistLocked writes the state atomically; a failure is logged, never
// fatal: raft's log still holds every entry.
func (f *fsm) persistLocked() {
	if err := writeFileAtomic(f.path, f.st); err != nil {
		f.log.Error("consensus: persist applied state", "err", err)
	}
}

func writeFileAtomic(path string, st docState) error {
	b, err := msgpack.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// load reads the persisted state, if any.
func (f *fsm) load() error {
	b, err := os.ReadFile(f.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consensus: %w", err)
	}
	var st docState
	if err := msgpack.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("consensus: decode %s: %w", f.path, err)
	}
	f.st = st
	return nil
}

func (f *fsm) get(name string) (Doc, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	h := f.st.Docs[name]
	if len(h) == 0 {
		return Doc{}, false
	}
	return h[len(h)-1], true
}

func (f *fsm) history(name string) []Doc {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return append([]Doc(nil), f.st.Docs[name]...)
}

func (f *fsm) names() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]string, 0, len(f.st.Docs))
	for k := range f.st.Docs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type fsmSnapshot struct{ st docState }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := msgpack.NewEncoder(sink).Encode(s.st); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
