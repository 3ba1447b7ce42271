package consensus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/raft"
)

type opKind int

const (
	opPut opKind = iota
	opGet
)

type regInput struct {
	Kind      opKind
	Key       string
	Content   string
	IfVersion int64
}

type regOutput struct {
	Unknown  bool   // Put whose outcome is unknown (no quorum, store closed)
	Conflict bool   // Put refused by CAS
	Version  int64  // Put: new or current version; Get: version read (0: absent)
	Content  string // Get: content read
}

type regState struct {
	Version int64
	Content string
}

// registerModel is a register per document name with its version.
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(regInput).Key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return regState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(regState), input.(regInput), output.(regOutput)
		if in.Kind == opGet {
			return out.Version == st.Version && out.Content == st.Content, st
		}
		matches := in.IfVersion < 0 || in.IfVersion == st.Version
		next := regState{Version: st.Version + 1, Content: in.Content}
		switch {
		case out.Unknown:
			if matches {
				return true, next
			}
			return true, st
		case out.Conflict:
			return !matches && out.Version == st.Version, st
		default:
			return matches && out.Version == next.Version, next
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		if in.Kind == opGet {
			return fmt.Sprintf("get(%s) -> v%d %q", in.Key, out.Version, out.Content)
		}
		return fmt.Sprintf("put(%s, %q, if %d) -> %+v", in.Key, in.Content, in.IfVersion, out)
	},
}

// TestLinearizableDuringLeaderKill runs concurrent Puts (conditional and
// not) and GetConsistent and GetCurrent reads from several clients on two documents while
// the leader is killed, and checks the history with porcupine.
func TestLinearizableDuringLeaderKill(t *testing.T) {
	c := newCluster(t, 3, 3, nil)
	c.reconcile()
	l := c.leader(20 * time.Second)
	stores := make([]*Store, len(c.nodes))
	for i, n := range c.nodes {
		stores[i] = n.s
	}
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		seq     atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	begin := time.Now()
	now := func() int64 { return int64(time.Since(begin)) }
	record := func(op porcupine.Operation) {
		mu.Lock()
		history = append(history, op)
		mu.Unlock()
	}
	for client := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(client), 7))
			var lastSeen int64
			for !stop.Load() {
				s := findLeader(stores)
				if s == nil {
					time.Sleep(5 * time.Millisecond) // sleep-ok: client back-off while no leader
					continue
				}
				key := []string{"a", "b"}[rng.IntN(2)]
				if rng.IntN(2) == 0 {
					in := regInput{Kind: opGet, Key: key}
					get := s.GetConsistent // a barrier in the log
					if rng.IntN(2) == 0 {
						get = s.GetCurrent // no log entry
					}
					call := now()
					d, _, err := get(context.Background(), key)
					if err == nil {
						lastSeen = d.Version
						record(porcupine.Operation{ClientId: client, Input: in, Call: call,
							Output: regOutput{Version: d.Version, Content: string(d.Content)}, Return: now()})
					}
					continue
				}
				in := regInput{Kind: opPut, Key: key, Content: fmt.Sprintf("c%d-%d", client, seq.Add(1)), IfVersion: -1}
				if rng.IntN(2) == 0 {
					in.IfVersion = lastSeen
				}
				call := now()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				d, err := s.Put(ctx, key, []byte(in.Content), in.IfVersion)
				cancel()
				ret := now()
				var out regOutput
				var ce *ConflictError
				switch {
				case err == nil:
					out.Version = d.Version
				case errors.As(err, &ce):
					out.Conflict, out.Version = true, ce.Current
				case errors.Is(err, ErrNotLeader):
					continue // refused before it was appended
				default:
					out.Unknown, ret = true, math.MaxInt64 // may commit at any later time
				}
				record(porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
			}
		}()
	}
	countOps := func() int { mu.Lock(); defer mu.Unlock(); return len(history) }
	waitFor(t, 10*time.Second, "100 operations before the kill", func() bool { return countOps() >= 100 })
	killAt := time.Now()
	c.kill(l)
	nl := c.leader(15 * time.Second)
	before := countOps()
	waitFor(t, 15*time.Second, "100 operations after the kill", func() bool { return countOps() >= before+100 })
	stop.Store(true)
	wg.Wait()
	t.Logf("%d operations; leader %s killed, %s took over within %s", len(history), l.id, nl.id, time.Since(killAt))

	res, info := porcupine.CheckOperationsVerbose(registerModel, history, 30*time.Second)
	if res != porcupine.Ok {
		path := t.TempDir() + "/history.html"
		porcupine.VisualizePath(registerModel, info, path) //nolint:errcheck
		t.Fatalf("history is not linearizable (%s); visualization in %s", res, path)
	}
}

func findLeader(stores []*Store) *Store {
	for _, s := range stores {
		if s.IsLeader() {
			return s
		}
	}
	return nil
}

func TestRegisterModelCatchesStaleRead(t *testing.T) {
	h := []porcupine.Operation{
		{Input: regInput{Kind: opPut, Key: "a", Content: "x", IfVersion: -1}, Call: 0, Output: regOutput{Version: 1}, Return: 10},
		{Input: regInput{Kind: opGet, Key: "a"}, Call: 20, Output: regOutput{}, Return: 30},
	}
	if porcupine.CheckOperations(registerModel, h) {
		t.Fatal("a read of nothing after a completed write was accepted")
	}
	h[1].Output = regOutput{Version: 1, Content: "x"}
	if !porcupine.CheckOperations(registerModel, h) {
		t.Fatal("a correct history was refused")
	}
}

// TestGetCurrentAfterFSMCatchesUp: a leader just elected whose FSM has
// not yet applied a write the old leader acknowledged (raft hands entries
// to the FSM's goroutine and counts them applied at once) must not answer
// GetCurrent from the old state. TestLinearizableDuringLeaderKill once
// found such a stale read under load.
func TestGetCurrentAfterFSMCatchesUp(t *testing.T) {
	var held atomic.Pointer[fsm] // the FSM whose entries wait for release
	release := make(chan struct{})
	testHookFSMApply = func(f *fsm) {
		if held.Load() == f {
			<-release
		}
	}
	t.Cleanup(func() { testHookFSMApply = nil }) // after the stores close
	c := newCluster(t, 3, 3, nil)
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the stores close
	c.reconcile()
	l := c.put("cfg", []byte("v0"))
	f := c.follower(l)
	waitFor(t, 10*time.Second, "the follower to apply v0", func() bool { d, _ := f.s.Get("cfg"); return string(d.Content) == "v0" })
	held.Store(f.s.fsm)
	d, err := l.s.Put(ctxT(t, 5*time.Second), "cfg", []byte("v1"), -1)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the follower's raft to count v1 applied", func() bool { return f.s.raft.AppliedIndex() >= d.Index })
	if err := l.s.raft.LeadershipTransferToServer(raft.ServerID(f.id), raft.ServerAddress(f.s.Addr())).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the follower to lead", f.s.IsLeader)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if got, ok, err := f.s.GetCurrent(ctx, "cfg"); err == nil && string(got.Content) != "v1" {
		t.Fatalf("GetCurrent on the new leader = %q (ok %v) before its FSM applied v1, which was acknowledged", got.Content, ok)
	}
	free()
	if got, _, err := f.s.GetCurrent(ctxT(t, 5*time.Second), "cfg"); err != nil || string(got.Content) != "v1" {
		t.Fatalf("GetCurrent once the FSM caught up = %q, %v; want v1", got.Content, err)
	}
}
