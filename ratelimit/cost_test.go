package ratelimit

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/wire"
)

// TestMeasureSyncCost measures the CPU the global sync costs a node: three
// limiters in this process, each serving calls on real loopback TCP, each
// deciding 20,000 requests a second spread evenly over 10,000 keys (2 a
// second per key, far below the limit, as the distinct keys of a busy
// API are), for 10 s. The process's CPU time with the rule global, less
// the same run with the rule local (no sync at all), divided by the three
// nodes and the seconds, is one node's sync cost per second of CPU. It is
// a measurement, not an assertion of speed, so it runs only with
// PINGORA_MEASURE=1:
//
//	PINGORA_MEASURE=1 go test -run TestMeasureSyncCost -v ./ratelimit/
func TestMeasureSyncCost(t *testing.T) {
	if os.Getenv("PINGORA_MEASURE") != "1" {
		t.Skip("a measurement: set PINGORA_MEASURE=1")
	}
	const nodes, perNode, keys, secs = 3, 20_000, 10_000, 10
	run := func(scope Scope) (cpu time.Duration, st Stats) {
		ls := tcpCluster(t, Rule{Name: "api", Key: "header:x-api-key", Limit: 1000, Scope: scope}, nodes)
		time.Sleep(time.Second) // sleep-ok: let the listeners and loops settle before the CPU is read
		before := cpuTime()
		drive(ls, perNode, keys, secs*time.Second)
		cpu = cpuTime() - before
		for _, l := range ls {
			s := l.Stats()
			st.SyncBatches += s.SyncBatches
			st.SyncKeys += s.SyncKeys
			st.Rules = s.Rules
		}
		for _, l := range ls {
			l.Close()
		}
		return cpu, st
	}
	local, _ := run(Local)
	global, st := run(Global)
	sync := (global - local) / (nodes * secs)
	t.Logf("CPU for %d s of %d decisions/s on each of %d nodes: local %v, global %v", secs, perNode, nodes, local, global)
	t.Logf("sync: %d batches, %d key lines (%.0f lines/s per node); keys tracked on the last node %d",
		st.SyncBatches, st.SyncKeys, float64(st.SyncKeys)/nodes/secs, st.Rules[0].Keys)
	t.Logf("sync cost per node: %v of CPU per second = %.2f %% of one core", sync, 100*sync.Seconds())
}

// tcpCluster starts n limiters with one rule, serving on loopback TCP,
// each with its own client, on a fixed ring of all of them.
func tcpCluster(t *testing.T, r Rule, n int) []*Limiter {
	addrs := map[string]string{}
	var ids []string
	var lns []net.Listener
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		id := "n" + strconv.Itoa(i)
		ids = append(ids, id)
		addrs[id] = ln.Addr().String()
		lns = append(lns, ln)
	}
	var out []*Limiter
	for i, id := range ids {
		srv, _ := wire.NewServer(wire.ServerConfig{})
		go srv.Serve(lns[i])
		client, _ := wire.NewClient(wire.ClientConfig{})
		ring := &hrwRing{self: id, nodes: ids}
		l, err := New(Config{Self: id, Peers: mapPeers(addrs), Client: client, Ring: func() Ring { return ring }})
		if err != nil {
			t.Fatal(err)
		}
		l.SetRules([]Rule{r})
		l.Register(srv)
		l.Start()
		t.Cleanup(func() { l.Close(); client.Close(); srv.Close() })
		out = append(out, l)
	}
	return out
}

type mapPeers map[string]string

func (m mapPeers) Addr(id string) (string, bool) {
	a, ok := m[id]
	return a, ok
}

// drive makes rate decisions a second on each limiter for d, key i of
// keys in turn.
func drive(ls []*Limiter, rate, keys int, d time.Duration) {
	reqs := make([]*Request, keys)
	for i := range reqs {
		reqs[i] = benchRequest(fmt.Sprintf("key-%05d", i))
	}
	var wg sync.WaitGroup
	for j, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			end := time.Now().Add(d)
			next := j * 977
			for now := range t.C {
				if now.After(end) {
					return
				}
				for range rate / 1000 {
					l.Decide(reqs[next%keys], 0, 0)
					next++
				}
			}
		}()
	}
	wg.Wait()
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
