package consensus

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestDocStatePut(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cmd := func(name string, content string, ifv int64) putCmd {
		return putCmd{Name: name, Content: []byte(content), IfVersion: ifv, Time: at, Node: "n1"}
	}
	tests := []struct {
		name    string
		cmds    []putCmd
		wantVer int64
		wantErr error
		hist    int
	}{
		{"create unconditional", []putCmd{cmd("a", "1", -1)}, 1, nil, 1},
		{"create if absent", []putCmd{cmd("a", "1", 0)}, 1, nil, 1},
		{"create if absent fails", []putCmd{cmd("a", "1", 0), cmd("a", "2", 0)}, 0, ErrConflict, 1},
		{"cas ok", []putCmd{cmd("a", "1", 0), cmd("a", "2", 1)}, 2, nil, 2},
		{"cas stale", []putCmd{cmd("a", "1", 0), cmd("a", "2", 1), cmd("a", "3", 1)}, 0, ErrConflict, 2},
		{"history capped", []putCmd{cmd("a", "1", -1), cmd("a", "2", -1), cmd("a", "3", -1), cmd("a", "4", -1)}, 4, nil, 3},
		{"names independent", []putCmd{cmd("a", "1", -1), cmd("b", "1", 0)}, 1, nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var st docState
			var res applyResult
			for i, c := range tc.cmds {
				res = st.put(c, uint64(i+1), 3)
			}
			if !errors.Is(res.Err, tc.wantErr) || res.Doc.Version != tc.wantVer {
				t.Fatalf("last put = %+v, want version %d err %v", res, tc.wantVer, tc.wantErr)
			}
			last := tc.cmds[len(tc.cmds)-1]
			if h := st.Docs[last.Name]; len(h) != tc.hist {
				t.Fatalf("history len %d, want %d", len(h), tc.hist)
			}
			if res.Err == nil && (res.Doc.Node != "n1" || !res.Doc.Time.Equal(at) || res.Doc.Index != uint64(len(tc.cmds))) {
				t.Fatalf("doc metadata = %+v", res.Doc)
			}
		})
	}
}

type bufSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *bufSink) ID() string    { return "test" }
func (s *bufSink) Cancel() error { s.cancelled = true; return nil }
func (s *bufSink) Close() error  { return nil }

func newTestFSM(t *testing.T, notify func(Doc)) *fsm {
	if notify == nil {
		notify = func(Doc) {}
	}
	return &fsm{path: filepath.Join(t.TempDir(), "applied.msgpack"), maxHistory: 20,
		log: slog.New(slog.DiscardHandler), notify: notify}
}

func applyPut(t *testing.T, f *fsm, idx uint64, name, content string) applyResult {
	data, err := encodeCmd(putCmd{Name: name, Content: []byte(content), IfVersion: -1})
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data}).(applyResult)
}

func TestFSMSnapshotRestoreAndSkip(t *testing.T) {
	t.Parallel()
	f := newTestFSM(t, nil)
	applyPut(t, f, 1, "a", "a1")
	applyPut(t, f, 2, "b", "b1")
	applyPut(t, f, 3, "a", "a2")
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink bufSink
	if err := snap.Persist(&sink); err != nil || sink.cancelled {
		t.Fatalf("persist: %v", err)
	}
	snapBytes := sink.Bytes()

	var notified []string
	g := newTestFSM(t, func(d Doc) { notified = append(notified, string(d.Content)) })
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapBytes))); err != nil {
		t.Fatal(err)
	}
	if d, _ := g.get("a"); d.Version != 2 || string(d.Content) != "a2" {
		t.Fatalf("restored a = %+v", d)
	}
	if len(notified) != 2 || notified[0] != "b1" || notified[1] != "a2" {
		t.Fatalf("restore notified %v, want [b1 a2]", notified)
	}
	// Entries at or below the applied index are skipped (replay after restart).
	if r := applyPut(t, g, 3, "a", "dup"); r.Err == nil {
		t.Fatal("replayed entry applied twice")
	}
	// An older snapshot does not roll state back.
	applyPut(t, g, 4, "a", "a3")
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapBytes))); err != nil {
		t.Fatal(err)
	}
	if d, _ := g.get("a"); d.Version != 3 {
		t.Fatalf("older snapshot rolled back: %+v", d)
	}
	// The persisted file carries the same state.
	h := newTestFSM(t, nil)
	h.path = g.path
	if err := h.load(); err != nil {
		t.Fatal(err)
	}
	if d, _ := h.get("a"); d.Version != 3 || h.st.Index != 4 {
		t.Fatalf("loaded %+v index %d", d, h.st.Index)
	}
}

func TestFSMUnknownCommand(t *testing.T) {
	t.Parallel()
	f := newTestFSM(t, nil)
	r := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{99, 1, 2}}).(applyResult)
	if r.Err == nil {
		t.Fatal("unknown command type accepted")
	}
	if len(f.names()) != 0 {
		t.Fatal("state changed")
	}
}

// TestFSMRestoreBoundsAllocation: a snapshot that declares far more
// documents than it holds is refused without allocating for them. msgpack
// v5.4.x trusted such lengths (vmihailenco/msgpack#401: 8 bytes cost
// 64 MiB); go.mod pins v5.3.6, which caps what it preallocates.
func TestFSMRestoreBoundsAllocation(t *testing.T) {
	// {"docs": {"a": array32 of 2^24 docs}} with nothing after the length.
	in := []byte{0x81, 0xa4, 'd', 'o', 'c', 's', 0x81, 0xa1, 'a', 0xdd, 0x01, 0x00, 0x00, 0x00}
	f := newTestFSM(t, nil)
	allocs := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if err := f.Restore(io.NopCloser(bytes.NewReader(in))); err == nil {
				b.Fatal("a truncated snapshot was restored")
			}
		}
	})
	if per := allocs.AllocedBytesPerOp(); per > 8<<20 { // v5.4.1: about 1.3 GiB
		t.Fatalf("restoring %d bytes allocated %d bytes", len(in), per)
	}
}
