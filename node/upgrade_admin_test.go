package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/handoff"
	"github.com/pingora-go/pingora-go/wire"
)

// TestHandedOffNodeLeavesTheAdminSocket: once a successor serves, the old
// process stops taking connections on the admin socket the two share,
// although it still drains a request in flight: /readyz, /status and
// config writes reach the process that serves, not one that answers
// "draining" (503) or "raft is not running" to every other client. The
// same for the cluster port: raft and the other nodes' RPCs reach the
// node's cluster identity, which is the successor's, and the RPC
// connections other nodes hold to the old process get goaway.
func TestHandedOffNodeLeavesTheAdminSocket(t *testing.T) {
	slowAddr, arrived, releaseOnce := slowOrigin(t)
	n := startRaftNode(t, "a1", slowAddr, 1)
	waitUntil(t, "ready", func() bool { code, _ := get(t, "http://"+n.AdminAddr()+"/readyz"); return code == 200 })
	adminAddr := n.AdminAddr()
	// another node's RPC connection, made before the hand-off
	peer, err := net.Dial("tcp", n.RPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.Write([]byte{wire.ProtoRPC}); err != nil {
		t.Fatal(err)
	}
	answered := make(chan string, 1)
	go func() {
		_, body := get(t, "http://"+n.ListenerAddrs()["http"]+"/")
		answered <- body
	}()
	<-arrived
	if err := n.OfferHandoff(); err != nil {
		t.Fatal(err)
	}
	// The successor: it takes the admin socket but does not accept on
	// it yet.
	in, err := handoff.Request(n.cfg.UpgradeSocketPath(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	take := func(name string) net.Listener {
		for _, e := range in.Entries() {
			if e.Name == name {
				ln, ok, err := in.Take(e.Name, e.Addr)
				if err != nil || !ok {
					t.Fatalf("%s socket not taken: %v %v", name, ok, err)
				}
				t.Cleanup(func() { ln.Close() })
				return ln
			}
		}
		t.Fatalf("%s socket not passed", name)
		return nil
	}
	aln, cln := take(adminListenerName), take(rpcListenerName)
	clusterAddr := cln.Addr().String()
	if err := in.Release(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := in.Serving(); err != nil {
		t.Fatal(err)
	}
	<-n.Superseded()
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- n.Shutdown(ctx)
	}()
	waitUntil(t, "the proxy draining", n.srv.Draining)
	got := make(chan string, 1)
	go func() {
		c := &http.Client{Timeout: 20 * time.Second}
		resp, err := c.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- resp.Status + " " + string(b)
	}()
	// Only now does the successor accept: a connection the old process
	// took has been answered by it already.
	succ := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "successor") })}
	go succ.Serve(aln)
	defer succ.Close()
	if g := <-got; g != "200 OK successor" {
		t.Fatalf("admin request after the hand-off answered %q, want the successor's", g)
	}
	// The RPC connection it held gets goaway: that node's next calls
	// dial the successor.
	peer.SetReadDeadline(time.Now().Add(20 * time.Second))
	var seen []byte
	for buf := make([]byte, 512); !strings.Contains(string(seen), "draining"); {
		k, err := peer.Read(buf)
		if err != nil {
			t.Fatalf("the RPC connection held before the hand-off got %q, then %v; want goaway", seen, err)
		}
		seen = append(seen, buf[:k]...)
	}
	c, err := net.Dial("tcp", clusterAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		sc, err := cln.Accept()
		if err == nil {
			io.WriteString(sc, "successor")
			sc.Close()
		}
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if b, err := io.ReadAll(c); string(b) != "successor" {
		t.Fatalf("cluster port connection after the hand-off: %q %v, want the successor's", b, err)
	}
	releaseOnce()
	if body := <-answered; body != "late" {
		t.Fatalf("the request in flight got %q", body)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}
