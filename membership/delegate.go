package membership

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"

	"github.com/hashicorp/memberlist"

	"github.com/pingora-go/pingora-go/internal/logthrottle"
)

// rawEvent is a memberlist callback, copied for the loop goroutine.
type rawEvent struct {
	typ  EventType
	name string
	addr string
	meta []byte
}

// delegate implements memberlist's Delegate and EventDelegate. Its methods
// copy, enqueue and return: memberlist calls them with its node lock held
// (hashicorp/memberlist#23, #237), so they must never block or call back.
type delegate struct {
	meta  *atomic.Pointer[announcement]
	queue *eventQueue
	inbox chan<- []byte
	drops *atomic.Uint64
	fl    *forceLeaves // force-leave intents: user messages and broadcasts
}

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	b := d.meta.Load().bytes
	if len(b) > limit { // encodeMeta guarantees this cannot happen
		return nil
	}
	return b
}

// NotifyMsg hands a user message (metadata sync, meta_sync.go) to the sync
// loop, or a force-leave intent (forceleave.go) to its loop; memberlist
// reuses buf, so it is copied.
func (d *delegate) NotifyMsg(buf []byte) {
	if len(buf) > 0 && buf[0] == msgForceLeave {
		d.fl.receive(buf)
		return
	}
	select {
	case d.inbox <- bytes.Clone(buf):
	default:
		d.drops.Add(1)
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.fl.queue.GetBroadcasts(overhead, limit)
}
func (d *delegate) LocalState(join bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.push(EventJoin, n) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.push(EventUpdate, n) }

// NotifyLeave cannot tell a leave from a failure: memberlist v0.7.0 never
// fills Node.State. applyEvent decides, from the member's last metadata.
func (d *delegate) NotifyLeave(n *memberlist.Node) { d.push(eventGone, n) }

func (d *delegate) push(t EventType, n *memberlist.Node) {
	d.queue.put(rawEvent{typ: t, name: n.Name, addr: n.Address(), meta: bytes.Clone(n.Meta)})
}

// eventQueue holds at most one pending event per member, so it is bounded
// by the cluster size and never drops the latest state of a member; a burst
// about one member coalesces (a pending join absorbs later updates).
type eventQueue struct {
	mu      sync.Mutex
	pending map[string]rawEvent
	order   []string      // names in arrival order
	ready   chan struct{} // capacity 1: "something is pending"
}

func newEventQueue() *eventQueue {
	return &eventQueue{pending: make(map[string]rawEvent), ready: make(chan struct{}, 1)}
}

func (q *eventQueue) put(ev rawEvent) {
	q.mu.Lock()
	if old, ok := q.pending[ev.name]; ok {
		if old.typ == EventJoin && ev.typ == EventUpdate {
			ev.typ = EventJoin
		}
	} else {
		q.order = append(q.order, ev.name)
	}
	q.pending[ev.name] = ev
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take returns and clears everything pending, in arrival order.
func (q *eventQueue) take() []rawEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]rawEvent, 0, len(q.order))
	for _, name := range q.order {
		out = append(out, q.pending[name])
	}
	clear(q.pending)
	q.order = q.order[:0]
	return out
}

// newLogBridge returns a *log.Logger for memberlist that forwards each line
// to l at the level memberlist's "[LEVEL]" prefix names, and lines about
// what a sender sent through noise (see senderNoise).
func newLogBridge(l *slog.Logger, noise *logthrottle.Throttle) *log.Logger {
	return log.New(logWriter{l, noise}, "", 0)
}

type logWriter struct {
	l     *slog.Logger
	noise *logthrottle.Throttle
}

func (w logWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for prefix, lv := range map[string]slog.Level{
		"[DEBUG] ": slog.LevelDebug, "[INFO] ": slog.LevelInfo,
		"[WARN] ": slog.LevelWarn, "[ERR] ": slog.LevelError,
	} {
		if rest, ok := strings.CutPrefix(msg, prefix); ok {
			msg, level = rest, lv
			break
		}
	}
	if level == slog.LevelError {
		level = errorLevel(msg)
	}
	if kind, ok := senderNoise(msg); ok && level >= slog.LevelWarn {
		w.noise.Log(w.l, min(level, slog.LevelWarn), kind, msg)
		return len(p), nil
	}
	w.l.Log(context.Background(), level, msg)
	return len(p), nil
}

// senderNoise reports whether msg is about a packet or stream some sender
// sent (memberlist ends those lines with "from=ADDR": a bad label, a
// message that does not decode, an unknown type), and returns its kind:
// the message up to its first variable part; or a line of claimNoise, its
// kind the prefix that matched. Anyone who can reach the
// gossip port can cause them, one per packet (50,000 junk packets logged
// 50,000 ERROR lines), so they are warnings, throttled per kind; this
// node's own failures stay errors.
func senderNoise(msg string) (kind string, ok bool) {
	if !strings.Contains(msg, " from=") {
		for _, k := range claimNoise {
			if strings.HasPrefix(msg, k) {
				return k, true
			}
		}
		return "", false
	}
	kind, _, _ = strings.Cut(msg, " from=")
	rest, _ := strings.CutPrefix(kind, "memberlist: ")
	if i := strings.IndexFunc(rest, func(r rune) bool { return strings.ContainsRune(":\"'(%", r) || unicode.IsDigit(r) }); i >= 0 {
		kind = kind[:len(kind)-len(rest)+i]
	}
	return strings.TrimSpace(kind), true
}

// claimNoise are memberlist's lines about what a sender claimed of a
// member (its address, that it is suspect or dead), one per message, which
// name no sender: without gossip_key anyone who reaches the gossip port can
// send such messages (5,000 alive messages for n3 at as many addresses
// logged 5,000 ERROR lines "Conflicting address for n3"). A real second
// node with a live node's name is reported by checkConflict, on that node.
var claimNoise = []string{
	"memberlist: Conflicting address for",
	"memberlist: Refuting a suspect message",
	"memberlist: Refuting a dead message",
	"memberlist: Rejected IP update",
}

// errorLevel grades memberlist's [ERR] lines: its own socket closed while
// this node stops is debug; a peer that cannot be reached (it stopped, or
// the network failed: no route, a firewall's DROP) is a warning, as gossip goes on without it and
// failure detection reports it; anything else stays an error. A normal
// stop then logs no ERROR (issue 12).
func errorLevel(msg string) slog.Level {
	switch {
	case strings.Contains(msg, "use of closed network connection"):
		return slog.LevelDebug
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "connection reset"),
		strings.Contains(msg, "broken pipe"), strings.Contains(msg, "i/o timeout"), strings.HasSuffix(msg, "EOF"),
		// the network between: no route, or a firewall's DROP (sendto
		// then fails with EPERM), as in a partition
		strings.Contains(msg, "no route to host"), strings.Contains(msg, "network is unreachable"),
		strings.Contains(msg, "host is unreachable"), strings.Contains(msg, "operation not permitted"):
		return slog.LevelWarn
	}
	return slog.LevelError
}
