package membership

import (
	"slices"
	"testing"

	"github.com/hashicorp/memberlist"
)

// namedBroadcast is a broadcast about one node, as memberlist queues its
// alive messages: a newer one about the same node replaces the older.
type namedBroadcast struct{ node, msg string }

func (b namedBroadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.node
}
func (b namedBroadcast) Name() string    { return b.node }
func (b namedBroadcast) Message() []byte { return []byte(b.msg) }
func (b namedBroadcast) Finished()       {}

// TestUpstreamQueueLosesBroadcast pins the cause of issue 12's lost
// metadata, hashicorp/memberlist#263 (open, unfixed in v0.7.0): when a new
// broadcast replaces the only one queued, the queue resets its id counter
// while the new entry keeps its id; a later broadcast of the same length
// then gets the same id and silently replaces it. This is the sequence of
// a node starting: its first alive sits queued (no peers yet), its
// metadata update replaces it, and the join brings alives of two peers
// whose encoding has the same length. If this test fails, memberlist fixed
// the bug; the acknowledgements in meta_sync.go stay as the safety net.
func TestUpstreamQueueLosesBroadcast(t *testing.T) {
	q := &memberlist.TransmitLimitedQueue{NumNodes: func() int { return 3 }, RetransmitMult: 4}
	q.QueueBroadcast(namedBroadcast{"n2", "alive n2 inc 1 starting"})
	q.QueueBroadcast(namedBroadcast{"n2", "alive n2 inc 2 ready raft=127.0.0.1:7947"})
	q.QueueBroadcast(namedBroadcast{"n1", "alive n1 inc 2"})
	q.QueueBroadcast(namedBroadcast{"n0", "alive n0 inc 2 ready raft=127.0.0.1:7948"}) // same length as n2's
	var sent []string
	for _, m := range q.GetBroadcasts(0, 1400) {
		sent = append(sent, string(m))
	}
	slices.Sort(sent)
	want := []string{"alive n0 inc 2 ready raft=127.0.0.1:7948", "alive n1 inc 2"}
	if !slices.Equal(sent, want) {
		t.Fatalf("sent %q; memberlist#263 would send only %q (n2's update lost)", sent, want)
	}
	if n := q.NumQueued(); n != 2 {
		t.Fatalf("%d queued after one send, want the 2 sent ones", n)
	}
}
