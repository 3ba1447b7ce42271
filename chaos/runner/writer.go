package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
)

// The config history is a register: each write through PUT /v1/config
// (no If-Match) puts a document naming a unique marker route
// (w-VALUE.chaos), and the cluster answers with the version it wrote;
// each read is GET /v1/config?consistent=true, giving version and marker.
// Writers and readers go through random running nodes, faulted ones
// included. porcupine checks that the history is linearizable with
// versions counting up by one per write.

// regState is the register: the current version and marker.
type regState struct {
	Version int64
	Value   int
}

// opIn is a write of Value, or a read.
type opIn struct {
	Write bool
	Value int
}

// opOut is what the cluster answered; Unknown for a write whose outcome
// the client cannot know (a timeout, a 5xx, a reset after sending): it may
// or may not take effect, at any time after it was sent.
type opOut struct {
	Version int64
	Value   int
	Unknown bool
}

// histOp is one operation as recorded, also written to the JSON result.
type histOp struct {
	Client  int     `json:"client"`
	Node    string  `json:"node"`
	Write   bool    `json:"write"`
	Value   int     `json:"value"`
	Call    float64 `json:"call"`
	Return  float64 `json:"return"` // -1: unknown outcome
	Version int64   `json:"version"`
	Got     int     `json:"got"` // a read's marker
	Unknown bool    `json:"unknown,omitempty"`
	Err     string  `json:"err,omitempty"`
}

var markerRe = regexp.MustCompile(`w-(\d+)\.chaos`)

// writer records the history. base renders the document with a marker.
type writer struct {
	base  func(marker int) string
	token string
	init  regState

	// paused stops new operations (while the runner measures agreement
	// after the heal: a write landing between two nodes' /status would
	// look like disagreement).
	paused atomic.Bool

	mu  sync.Mutex
	ops []histOp
	// Failed writes: refused before reaching a node (connection refused),
	// or answered 4xx: they took no effect and are not in the history.
	failed int
}

var writeClient = &http.Client{Timeout: 8 * time.Second}

func (w *writer) run(ctx context.Context, r *Run, client int, write bool) {
	seq := 0
	for ctx.Err() == nil {
		nodes := r.Nodes()
		var live []Node
		for _, n := range nodes {
			if n.Admin != "" {
				live = append(live, n)
			}
		}
		if len(live) > 0 && !w.paused.Load() {
			n := live[rand.IntN(len(live))]
			if write {
				seq++
				w.write(r, client, n, client*1_000_000+seq)
			} else {
				w.read(r, client, n)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(200+rand.IntN(200)) * time.Millisecond):
		}
	}
}

func (w *writer) write(r *Run, client int, n Node, value int) {
	op := histOp{Client: client, Node: n.Name, Write: true, Value: value, Call: r.Since(time.Now())}
	req, _ := http.NewRequest("PUT", "http://"+n.Admin+"/v1/config", strings.NewReader(w.base(value)))
	req.Header.Set("Authorization", "Bearer "+w.token)
	resp, err := writeClient.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			w.mu.Lock()
			w.failed++
			w.mu.Unlock()
			return
		}
		op.Unknown, op.Return, op.Err = true, -1, err.Error()
		w.add(op)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc struct {
		Version   int64 `json:"version"`
		Unchanged bool  `json:"unchanged"`
	}
	switch {
	case resp.StatusCode == http.StatusOK && json.Unmarshal(body, &doc) == nil && !doc.Unchanged:
		op.Version, op.Return = doc.Version, r.Since(time.Now())
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		w.mu.Lock()
		w.failed++
		w.mu.Unlock()
		return
	default:
		op.Unknown, op.Return, op.Err = true, -1, fmt.Sprintf("HTTP %d: %.100s", resp.StatusCode, body)
	}
	w.add(op)
}

// readDoc reads the config through n, linearizably.
func readDoc(n Node) (int64, int, error) {
	resp, err := writeClient.Get("http://" + n.Admin + "/v1/config?consistent=true")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("HTTP %d: %.100s", resp.StatusCode, body)
	}
	var doc struct {
		Version int64  `json:"version"`
		Content string `json:"content"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return 0, 0, err
	}
	return doc.Version, markerOf(doc.Content), nil
}

func markerOf(content string) int {
	m := markerRe.FindStringSubmatch(content)
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

func (w *writer) read(r *Run, client int, n Node) {
	op := histOp{Client: client, Node: n.Name, Call: r.Since(time.Now())}
	v, val, err := readDoc(n)
	if err != nil {
		return // a failed read has no effect: left out
	}
	op.Return, op.Version, op.Got = r.Since(time.Now()), v, val
	w.add(op)
}

func (w *writer) add(op histOp) {
	w.mu.Lock()
	w.ops = append(w.ops, op)
	w.mu.Unlock()
}

func (w *writer) history() []histOp {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]histOp(nil), w.ops...)
}

// registerModel is the versioned register for porcupine.
func registerModel(init regState) porcupine.Model {
	nd := porcupine.NondeterministicModel{
		Init: func() []any { return []any{init} },
		Step: func(state, input, output any) []any {
			s, in, out := state.(regState), input.(opIn), output.(opOut)
			if in.Write {
				next := regState{Version: s.Version + 1, Value: in.Value}
				if out.Unknown {
					return []any{s, next}
				}
				if out.Version == next.Version {
					return []any{next}
				}
				return nil
			}
			if out.Version == s.Version && out.Value == s.Value {
				return []any{s}
			}
			return nil
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(opIn), output.(opOut)
			if in.Write {
				if out.Unknown {
					return fmt.Sprintf("write(%d) -> ?", in.Value)
				}
				return fmt.Sprintf("write(%d) -> v%d", in.Value, out.Version)
			}
			return fmt.Sprintf("read() -> v%d %d", out.Version, out.Value)
		},
	}
	return nd.ToModel()
}

// checkLinearizable runs porcupine over the history (times in µs; an
// unknown outcome returns at the end of time).
func checkLinearizable(init regState, hist []histOp, timeout time.Duration) porcupine.CheckResult {
	ops := make([]porcupine.Operation, 0, len(hist))
	for _, h := range hist {
		ret := int64(h.Return * 1e6)
		if h.Return < 0 {
			ret = math.MaxInt64
		}
		ops = append(ops, porcupine.Operation{ClientId: h.Client, Call: int64(h.Call * 1e6), Return: ret,
			Input: opIn{Write: h.Write, Value: h.Value}, Output: opOut{Version: h.Version, Value: h.Got, Unknown: h.Unknown}})
	}
	return porcupine.CheckOperationsTimeout(registerModel(init), ops, timeout)
}
