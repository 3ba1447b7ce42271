package wire

import (
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of the call latency histogram, from
// 50µs (a loopback call) to 10s (a default write timeout). Read-only.
var latencyBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Error classes counted beside the remote codes: a client also fails calls
// on its own side.
const (
	classPeerGone = numCodes + iota // the connection could not be made or died
	classCanceled                   // the caller's context was cancelled
	classLocal                      // encode/decode, too large, closed client
	numClasses
)

var classNames = [numClasses]string{
	codeNames[0], codeNames[1], codeNames[2], codeNames[3], codeNames[4],
	"peer_gone", "canceled", "local",
}

// ErrorClasses returns the classes MethodStats.Errors may count on a
// server (the Code names) or on a client (those, and "peer_gone",
// "canceled", "local"), so an exporter can report each as zero before it
// first happens.
func ErrorClasses(client bool) []string {
	if client {
		return slices.Clone(classNames[:])
	}
	return slices.Clone(classNames[:numCodes])
}

// Histogram is a snapshot of a latency histogram. Counts[i] counts calls
// that took at most Bounds[i] (and more than Bounds[i-1]); the last count,
// Counts[len(Bounds)], is for calls slower than every bound.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// MethodStats is a snapshot of one method's counters.
type MethodStats struct {
	Method string
	// Calls counts finished calls, whatever their outcome.
	Calls uint64
	// Errors counts failed calls by class: the Code names ("handler",
	// "unknown_method", "not_owner", "overloaded", "deadline"), and on a
	// client also "peer_gone", "canceled" and "local". Zero classes are absent.
	Errors map[string]uint64
	// BytesSent and BytesReceived count body bytes (request or response
	// payloads, stream chunks included), framing excluded.
	BytesSent, BytesReceived uint64
	// InFlight is the number of calls started and not yet finished.
	InFlight int64
	// Latency is the time from sending (client) or receiving (server) the
	// request to the answer; for a stream, to its first frame.
	Latency Histogram
}

// methodStats is one method's live counters, updated with atomics only.
type methodStats struct {
	calls, sent, received atomic.Uint64
	errors                [numClasses]atomic.Uint64
	inFlight              atomic.Int64
	buckets               [len(latencyBounds) + 1]atomic.Uint64
	sumNanos              atomic.Int64
}

// begin counts a call in flight.
func (m *methodStats) begin() { m.inFlight.Add(1) }

// end records a call begun at start as finished. class is -1 on success.
func (m *methodStats) end(start time.Time, class int) {
	m.inFlight.Add(-1)
	m.count(class)
	m.observe(time.Since(start))
}

// count counts a finished call without its latency: a call refused before
// it ran, or a stream (whose latency is taken at its first frame).
func (m *methodStats) count(class int) {
	m.calls.Add(1)
	if class >= 0 {
		m.errors[class].Add(1)
	}
}

func (m *methodStats) observe(d time.Duration) {
	i := sort.Search(len(latencyBounds), func(i int) bool { return d <= latencyBounds[i] })
	m.buckets[i].Add(1)
	m.sumNanos.Add(int64(d))
}

func (m *methodStats) snapshot(method string) MethodStats {
	s := MethodStats{
		Method: method, Calls: m.calls.Load(), InFlight: m.inFlight.Load(),
		BytesSent: m.sent.Load(), BytesReceived: m.received.Load(),
		Latency: Histogram{Bounds: slices.Clone(latencyBounds[:]), Counts: make([]uint64, len(m.buckets)), Sum: time.Duration(m.sumNanos.Load())},
	}
	for i := range m.errors {
		if n := m.errors[i].Load(); n > 0 {
			if s.Errors == nil {
				s.Errors = make(map[string]uint64)
			}
			s.Errors[classNames[i]] = n
		}
	}
	for i := range m.buckets {
		s.Latency.Counts[i] = m.buckets[i].Load()
		s.Latency.Count += s.Latency.Counts[i]
	}
	return s
}

// methodTable holds per-method counters. Method names come from code (a
// server's Handle calls, a client's call sites), so the table stays small.
type methodTable struct {
	m sync.Map // string -> *methodStats
}

func (t *methodTable) get(method string) *methodStats {
	if v, ok := t.m.Load(method); ok {
		return v.(*methodStats)
	}
	v, _ := t.m.LoadOrStore(method, new(methodStats))
	return v.(*methodStats)
}

// lookup returns the method's counters, or nil if it has none.
func (t *methodTable) lookup(method string) *methodStats {
	if v, ok := t.m.Load(method); ok {
		return v.(*methodStats)
	}
	return nil
}

// snapshot returns every method's counters, sorted by method.
func (t *methodTable) snapshot() []MethodStats {
	var out []MethodStats
	t.m.Range(func(k, v any) bool {
		out = append(out, v.(*methodStats).snapshot(k.(string)))
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Method < out[j].Method })
	return out
}
