package ratelimit

import (
	"strconv"
	"testing"

	"github.com/pingora-go/pingora-go/wire"
	"github.com/pingora-go/pingora-go/wire/wiretest"
)

// TestSyncRetriedOnDeadConn: a report written on a pooled connection to
// its owner that turns out dead (the owner restarted) is sent again on a
// new connection, and its key stays on its lease; but a report that
// returns a lease is sent once only (applied twice it would refund twice),
// so that one fails and its key falls back for the round.
func TestSyncRetriedOnDeadConn(t *testing.T) {
	ids := []string{"a", "b"}
	nw := wiretest.New()
	var stale wiretest.StaleConns
	var a *Limiter
	var aClient *wire.Client
	for _, id := range ids {
		ln, err := nw.Listen(id + ":7947")
		if err != nil {
			t.Fatal(err)
		}
		srv, _ := wire.NewServer(wire.ServerConfig{})
		go srv.Serve(ln)
		client, _ := wire.NewClient(wire.ClientConfig{Dialer: stale.Wrap(nw.Dialer())})
		ring := &hrwRing{self: id, nodes: ids}
		l, err := New(Config{Self: id, Peers: simPeers{}, Client: client, Ring: func() Ring { return ring }})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.SetRules([]Rule{globalRule(200)}); err != nil {
			t.Fatal(err)
		}
		l.Register(srv)
		t.Cleanup(func() { l.Close(); client.Close(); srv.Close() })
		if id == "a" {
			a, aClient = l, client
		}
	}
	key := ""
	for i := 0; key == ""; i++ {
		if o, _ := (&hrwRing{nodes: ids}).Owner("api\x00k" + strconv.Itoa(i)); o == "b" {
			key = "k" + strconv.Itoa(i)
		}
	}
	req := &Request{Header: map[string][]string{"X-Api-Key": {key}}}
	if !a.Decide(req, 0, 0).Allow {
		t.Fatal("first request refused")
	}
	a.step() // reports to b over a new connection, and leases
	e := a.rules.Load().list[0].c.entries.get(key)
	if f := e.flags.Load(); f&flagKnown == 0 || f&flagFallback != 0 || e.lease.Load() == 0 {
		t.Fatalf("after the first report: flags %b, lease %d; want a lease from b", f, e.lease.Load())
	}

	stale.Kill()
	if !a.Decide(req, 0, 0).Allow {
		t.Fatal("request on the lease refused")
	}
	a.queue(e, false)
	a.step()
	st := a.Stats()
	if st.SyncErrors != 0 || e.flags.Load()&flagFallback != 0 || aClient.Stats().Retries != 1 {
		t.Fatalf("report on a dead pooled connection: sync errors %d, fallback %v, retries %d; want it sent again, on its lease",
			st.SyncErrors, e.flags.Load()&flagFallback != 0, aClient.Stats().Retries)
	}

	stale.Kill()
	if e.lease.Load() == 0 {
		t.Fatal("no lease left to return")
	}
	e.flags.Or(flagRelease) // as the sweep asks an unspent lease back
	a.queue(e, false)
	a.step()
	if st := a.Stats(); st.SyncErrors != 1 || e.flags.Load()&flagFallback == 0 || aClient.Stats().Retries != 1 {
		t.Fatalf("report returning a lease on a dead connection: sync errors %d, fallback %v, retries %d; want it failed, not sent again",
			st.SyncErrors, e.flags.Load()&flagFallback != 0, aClient.Stats().Retries)
	}
}
