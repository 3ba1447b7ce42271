package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wireprom"
)

// registerClusterMetrics exports the cluster RPC's and membership's
// counters (issue 13): wireprom over the RPC server, the cluster port's
// Mux and the node's RPC clients (config forwarding, cache, rate limits),
// and membership's drops and errors. They are read at each scrape: the
// server, the port and the membership exist only while the node runs.
func (n *Node) registerClusterMetrics() error {
	clients := clientsSource{n.rpcClient, n.limits.client, n.cache.client}
	if err := n.reg.Register(wireprom.NewCollector(wireprom.Sources{Server: rpcServerSource{n}, Client: clients, Mux: muxSource{n}})); err != nil {
		return err
	}
	return n.reg.Register(membershipCollector{n: n,
		dropped: prometheus.NewDesc("pingora_membership_dropped_total",
			"Membership messages and events dropped, by what (event: a subscriber was behind; sync: a metadata sync message arrived faster than it was handled; force_leave: a force-leave message was malformed or arrived too fast).",
			[]string{"what"}, nil),
		errors: prometheus.NewDesc("pingora_membership_errors_total",
			"Membership errors, by kind (meta_decode: a peer's metadata did not decode; sync_decode: a sync message did not decode; join: a join attempt failed).",
			[]string{"kind"}, nil),
	})
}

// rpcParts returns the RPC server and the cluster port's Mux (nil when
// the node does not run them).
func (n *Node) rpcParts() (*wire.Server, *wire.Mux) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rpc, n.mux
}

type rpcServerSource struct{ n *Node }

func (s rpcServerSource) Stats() wire.ServerStats {
	srv, _ := s.n.rpcParts()
	return srv.Stats() // zeros when nil
}

type muxSource struct{ n *Node }

func (s muxSource) Stats() wire.MuxStats {
	_, mux := s.n.rpcParts()
	return mux.Stats() // zeros when nil
}

// clientsSource adds up the node's RPC clients, method by method (each
// part calls its own methods, but a method two parts share is one series).
type clientsSource []*wire.Client

func (cs clientsSource) Stats() wire.ClientStats {
	var out wire.ClientStats
	byMethod := map[string]int{}
	for _, c := range cs {
		st := c.Stats()
		out.Dials += st.Dials
		out.DialErrors += st.DialErrors
		out.Retries += st.Retries
		for _, m := range st.Methods {
			i, ok := byMethod[m.Method]
			if !ok {
				byMethod[m.Method] = len(out.Methods)
				out.Methods = append(out.Methods, m)
				continue
			}
			out.Methods[i] = addMethodStats(out.Methods[i], m)
		}
	}
	return out
}

// addMethodStats returns a and b added up; their histograms share bounds
// (wire's).
func addMethodStats(a, b wire.MethodStats) wire.MethodStats {
	a.Calls += b.Calls
	a.BytesSent += b.BytesSent
	a.BytesReceived += b.BytesReceived
	a.InFlight += b.InFlight
	errs := make(map[string]uint64, len(a.Errors)+len(b.Errors))
	for _, e := range []map[string]uint64{a.Errors, b.Errors} {
		for k, v := range e {
			errs[k] += v
		}
	}
	a.Errors = errs
	counts := make([]uint64, len(a.Latency.Counts))
	for i := range counts {
		counts[i] = a.Latency.Counts[i]
		if i < len(b.Latency.Counts) {
			counts[i] += b.Latency.Counts[i]
		}
	}
	a.Latency.Counts = counts
	a.Latency.Count += b.Latency.Count
	a.Latency.Sum += b.Latency.Sum
	return a
}

// membershipCollector exports membership.Stats' drops and errors; a node
// that does not gossip exports none.
type membershipCollector struct {
	n               *Node
	dropped, errors *prometheus.Desc
}

var _ prometheus.Collector = membershipCollector{}

func (c membershipCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.dropped
	ch <- c.errors
}

func (c membershipCollector) Collect(ch chan<- prometheus.Metric) {
	mc := c.n.Members()
	if mc == nil {
		return
	}
	st := mc.Stats()
	for _, v := range []struct {
		d     *prometheus.Desc
		n     uint64
		label string
	}{
		{c.dropped, st.SubscriberDrops, "event"}, {c.dropped, st.SyncDrops, "sync"}, {c.dropped, st.ForceLeaveDrops, "force_leave"},
		{c.errors, st.MetaDecodeErrors, "meta_decode"}, {c.errors, st.SyncErrors, "sync_decode"}, {c.errors, st.JoinFailures, "join"},
	} {
		ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n), v.label)
	}
}
