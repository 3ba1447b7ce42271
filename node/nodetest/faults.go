package nodetest

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wiretest"
)

// Faults injects faults between a Cluster's nodes, by node name and per
// direction. The cluster ports (raft and RPC) go through a
// wiretest.Faults; gossip through a memberlist transport decorator that
// reads the same link faults. Faults may change at any time.
type Faults struct {
	wf *wiretest.Faults

	mu       sync.Mutex
	gossip   map[string]string // gossip "ip:port" -> node name
	isolated map[string]bool   // nodes being killed: no gossip in or out
	saved    map[string]map[wiretest.Link]wiretest.LinkFaults
}

func newFaults() *Faults {
	return &Faults{
		wf:     wiretest.NewFaults(wiretest.FaultsConfig{}),
		gossip: make(map[string]string), isolated: make(map[string]bool),
		saved: make(map[string]map[wiretest.Link]wiretest.LinkFaults),
	}
}

// Network returns the node.Network of node name.
func (f *Faults) Network(name string) node.Network { return &nodeNet{f: f, name: name} }

// Partition cuts every link, both ways, between nodes of different groups.
func (f *Faults) Partition(groups ...[]string) { f.wf.Partition(groups...) }

// CutOneWay cuts from→to only: from's packets and bytes stop reaching to;
// to's still reach from. A new TCP connection needs both ways, so neither
// can dial the other.
func (f *Faults) CutOneWay(from, to string) { f.wf.CutOneWay(from, to) }

// Delay adds d to everything sent from→to.
func (f *Faults) Delay(from, to string, d time.Duration) {
	lf := f.wf.Get(from, to)
	lf.Delay = d
	f.wf.Set(from, to, lf)
}

// DropFrames loses the fraction p (0..1) of RPC frames sent from→to.
func (f *Faults) DropFrames(from, to string, p float64) {
	lf := f.wf.Get(from, to)
	lf.DropFrames = p
	f.wf.Set(from, to, lf)
}

// Heal removes every link fault.
func (f *Faults) Heal() { f.wf.Heal() }

// Stats returns what the cluster-port faults did.
func (f *Faults) Stats() wiretest.FaultStats { return f.wf.Stats() }

// isolate takes name off the network before it is killed: gossip to and
// from it is dropped, cluster-port dials to and from it are refused and
// its open cluster connections are reset, so nothing it says while it
// stops (draining, leaving, a raft hand-over) reaches anyone. The link
// faults it had are kept for release.
func (f *Faults) isolate(name string, peers []string) {
	f.mu.Lock()
	f.isolated[name] = true
	saved := make(map[wiretest.Link]wiretest.LinkFaults)
	f.saved[name] = saved
	f.mu.Unlock()
	for _, p := range peers {
		for _, l := range []wiretest.Link{{From: name, To: p}, {From: p, To: name}} {
			lf := f.wf.Get(l.From, l.To)
			saved[l] = lf
			f.wf.Set(l.From, l.To, wiretest.LinkFaults{DropDials: 1})
		}
		f.wf.Reset(name, p)
	}
}

// release puts back the links of a node that isolate took off, once it
// has stopped: its ports are closed, so peers now get refusals, as from a
// dead host.
func (f *Faults) release(name string) {
	f.mu.Lock()
	saved := f.saved[name]
	delete(f.saved, name)
	delete(f.isolated, name)
	f.mu.Unlock()
	for l, lf := range saved {
		f.wf.Set(l.From, l.To, lf)
	}
}

// gossipName returns the node gossiping at addr, or "".
func (f *Faults) gossipName(addr string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gossip[addr]
}

// gossipFate says whether a gossip packet (stream: a TCP stream) from→to
// is blocked, and how long it is delayed.
func (f *Faults) gossipFate(from, to string, stream bool) (blocked bool, delay time.Duration) {
	if to == "" {
		return false, 0 // not one of ours
	}
	f.mu.Lock()
	iso := f.isolated[from] || f.isolated[to]
	f.mu.Unlock()
	out, in := f.wf.Get(from, to), f.wf.Get(to, from)
	return iso || out.Cut || (stream && in.Cut), out.Delay
}

// nodeNet is one node's node.Network.
type nodeNet struct {
	f    *Faults
	name string
}

var _ node.Network = (*nodeNet)(nil)

func (n *nodeNet) ClusterListener(l net.Listener) net.Listener { return n.f.wf.Listener(n.name, l) }

func (n *nodeNet) ClusterDial(d node.DialFunc) node.DialFunc {
	return n.f.wf.Dialer(n.name, wire.DialerFunc(d)).DialContext
}

func (n *nodeNet) Gossip(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	if nt, ok := t.(interface{ GetAutoBindPort() int }); ok { // memberlist.NetTransport, behind membership's stream gate
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(nt.GetAutoBindPort()))
		n.f.mu.Lock()
		n.f.gossip[addr] = n.name
		n.f.mu.Unlock()
	}
	return &gossipTransport{NodeAwareTransport: t, f: n.f, self: n.name}
}

// gossipTransport applies the link faults to memberlist's packets and
// streams. Every node's transport is wrapped, so acting on what a node
// sends covers both directions of a link.
type gossipTransport struct {
	memberlist.NodeAwareTransport
	f    *Faults
	self string
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	blocked, delay := t.f.gossipFate(t.self, t.f.gossipName(a.Addr), false)
	switch {
	case blocked:
		return time.Now(), nil // lost, as a datagram is
	case delay > 0:
		b = append([]byte(nil), b...) // memberlist reuses its buffer
		time.AfterFunc(delay, func() { t.NodeAwareTransport.WriteToAddress(b, a) })
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *gossipTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, d)
}

func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	to := t.f.gossipName(a.Addr)
	if blocked, _ := t.f.gossipFate(t.self, to, true); blocked {
		return nil, fmt.Errorf("nodetest: gossip %s → %s is cut", t.self, to)
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, d)
}
