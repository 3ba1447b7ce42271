package nodetest_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/node/nodetest"
	"github.com/pingora-go/pingora-go/wire"
)

// statusMethod is the node's RPC smoke-test method (node/rpc.go).
const statusMethod = "node.status"

// clientAs returns a wire client that dials as node name would, through
// the cluster's faults.
func clientAs(t *testing.T, c *nodetest.Cluster, name string) *wire.Client {
	t.Helper()
	var d net.Dialer
	dial := c.Faults.Network(name).ClusterDial(func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	})
	cl, err := wire.NewClient(wire.ClientConfig{Dialer: wire.DialerFunc(dial)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func callStatus(cl *wire.Client, addr string, timeout time.Duration) (node.RPCStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var st node.RPCStatus
	err := cl.Call(ctx, addr, statusMethod, &struct{}{}, &st)
	return st, err
}

// TestRPCFrameLossAndDelay: RPC frames a link drops never arrive (the
// call runs out of time on a connection that stays in step), a delay
// longer than a call's deadline fails it, and both heal.
func TestRPCFrameLossAndDelay(t *testing.T) {
	c := nodetest.Start(t, nodetest.Config{})
	a, b := c.Nodes()[0], c.Nodes()[1]
	cl := clientAs(t, c, a.Name)
	addr := b.Node().RPCAddr()
	if st, err := callStatus(cl, addr, 5*time.Second); err != nil || st.Name != b.Name {
		t.Fatalf("healthy call: %+v %v", st, err)
	}
	c.Faults.DropFrames(a.Name, b.Name, 1)
	if _, err := callStatus(cl, addr, 200*time.Millisecond); err == nil {
		t.Fatal("a call whose frames are all dropped succeeded")
	}
	if c.Faults.Stats().DroppedFrames == 0 {
		t.Fatal("no frame counted as dropped")
	}
	c.Faults.DropFrames(a.Name, b.Name, 0)
	c.Faults.Delay(b.Name, a.Name, time.Second)
	if _, err := callStatus(cl, addr, 100*time.Millisecond); err == nil {
		t.Fatal("a call answered over a link delayed past its deadline succeeded")
	}
	c.Faults.Heal()
	c.WaitFor("calls to succeed again", 10*time.Second, func() bool {
		st, err := callStatus(cl, addr, time.Second)
		return err == nil && st.Name == b.Name
	})
}

// TestDrainingLeavesRingBeforeRPCStops: a node told to stop while it
// finishes a request is off every other node's ring while it still
// answers cluster calls (saying it is not ready), so no peer sends it a
// call it would not answer.
func TestDrainingLeavesRingBeforeRPCStops(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	var releaseOnce sync.Once
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "v1")
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // runs before slow.Close
	c := nodetest.Start(t, nodetest.Config{ClusterConfig: nodetest.Route(slow.Listener.Addr().String())})
	nd := c.Nodes()[1]
	rest := others(c, nd)
	rpcAddr := nd.Node().RPCAddr()

	got := make(chan string, 1)
	go func() { _, body := nd.Get("/slow"); got <- body }()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never reached the origin")
	}
	stopped := make(chan struct{})
	go func() { defer close(stopped); c.Stop(nd.Name) }()
	c.WaitFor(nd.Name+" off the other rings", 10*time.Second, func() bool {
		_, _, ok := nodetest.Agreed(rest...)
		return ok
	})
	st, err := callStatus(clientAs(t, c, rest[0].Name), rpcAddr, 5*time.Second)
	if err != nil || st.Name != nd.Name || st.Ready {
		t.Fatalf("draining %s off the rings: RPC answered %+v, %v; want its status, not ready", nd.Name, st, err)
	}
	releaseOnce.Do(func() { close(release) })
	if body := <-got; body != "v1" {
		t.Fatalf("the request in flight while draining got %q", body)
	}
	<-stopped
}
