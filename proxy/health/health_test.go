package health

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

type changes struct {
	mu   sync.Mutex
	list []Change
}

func (c *changes) add(ch Change) {
	c.mu.Lock()
	c.list = append(c.list, ch)
	c.mu.Unlock()
}

func (c *changes) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.list)
}

func TestActiveThresholds(t *testing.T) {
	var log changes
	reg := NewRegistry(nil, log.add)
	r := reg.Get("k", "10.0.0.1:80")
	c := Check{Rise: 2, Fall: 3}
	for i := 0; i < 2; i++ {
		r.ObserveActive(false, "refused", c)
		if !r.State().Healthy() {
			t.Fatalf("down after %d failures, fall is 3", i+1)
		}
	}
	r.ObserveActive(false, "refused", c)
	if r.State().Healthy() {
		t.Fatal("still up after 3 failures")
	}
	r.ObserveActive(true, "", c)
	if r.State().Healthy() {
		t.Fatal("up after 1 success, rise is 2")
	}
	r.ObserveActive(true, "", c)
	if !r.State().Healthy() {
		t.Fatal("still down after 2 successes")
	}
	if log.count() != 2 || log.list[0].Healthy || log.list[0].Reason != "active check: refused" {
		t.Fatalf("changes %+v", log.list)
	}
	r.ObserveActive(false, "x", c)
	r.StopActive()
	if !r.State().Healthy() || r.Snapshot().ActiveCheck != "" {
		t.Fatal("removing the check must not leave the peer down")
	}
}

// TestPassiveEjection: consecutive failures eject; the cool-off doubles on
// a repeated ejection and resets after a success outside an ejection.
func TestPassiveEjection(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	reg := NewRegistry(clk, nil)
	r := reg.Get("k", "a")
	p := Passive{MaxFails: 2, CoolOff: 10 * time.Second, MaxCoolOff: 25 * time.Second}
	fail := func() { r.ObserveProxy(false, "reset", p) }
	waitHealthy := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for r.State().Healthy() != want {
			if time.Now().After(deadline) {
				t.Fatalf("healthy never became %v", want)
			}
			time.Sleep(time.Millisecond) // sleep-ok: the AfterFunc runs in its own goroutine
		}
	}
	fail()
	if !r.State().Healthy() {
		t.Fatal("ejected after one failure, max_fails is 2")
	}
	fail()
	waitHealthy(false)
	if got := r.Snapshot().EjectedUntil.Sub(clk.Now()); got != 10*time.Second {
		t.Fatalf("first cool-off %v", got)
	}
	clk.Advance(10 * time.Second)
	waitHealthy(true)
	fail()
	fail()
	waitHealthy(false)
	if got := r.Snapshot().EjectedUntil.Sub(clk.Now()); got != 20*time.Second {
		t.Fatalf("second cool-off %v, want doubled 20s", got)
	}
	clk.Advance(20 * time.Second)
	waitHealthy(true)
	fail()
	fail()
	waitHealthy(false)
	if got := r.Snapshot().EjectedUntil.Sub(clk.Now()); got != 25*time.Second {
		t.Fatalf("third cool-off %v, want capped 25s", got)
	}
	clk.Advance(25 * time.Second)
	waitHealthy(true)
	r.ObserveProxy(true, "", p)
	fail()
	fail()
	waitHealthy(false)
	if got := r.Snapshot().EjectedUntil.Sub(clk.Now()); got != 10*time.Second {
		t.Fatalf("cool-off after a success %v, want reset to 10s", got)
	}
}

func TestManualDisable(t *testing.T) {
	reg := NewRegistry(nil, nil)
	r := reg.Get("k", "a")
	r.SetDisabled(true)
	if r.State().Healthy() || !r.Snapshot().Disabled {
		t.Fatal("disable ignored")
	}
	r.ObserveActive(true, "", Check{Rise: 1})
	if r.State().Healthy() {
		t.Fatal("an active success overrode the operator")
	}
	r.SetDisabled(false)
	if !r.State().Healthy() {
		t.Fatal("enable ignored")
	}
}

func TestCheckerHTTPAndTCP(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var hostSeen atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hostSeen.Store(r.Host + " " + r.URL.Path)
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	reg := NewRegistry(nil, nil)
	up, down := reg.Get("up", srv.Listener.Addr().String()), reg.Get("down", dead)
	ctx := context.Background()
	httpCheck := NewChecker(Check{Type: "http", Path: "/healthz", Host: "svc.internal", Rise: 1, Fall: 1, Timeout: time.Second},
		[]Target{{Record: up, Addr: srv.Listener.Addr().String()}, {Record: down, Addr: dead}}, nil)
	httpCheck.Step(ctx)
	if !up.State().Healthy() || down.State().Healthy() {
		t.Fatalf("after one step: up=%v down=%v", up.State().Healthy(), down.State().Healthy())
	}
	if got := hostSeen.Load(); got != "svc.internal /healthz" {
		t.Fatalf("check sent %v", got)
	}
	status.Store(503)
	httpCheck.Step(ctx)
	if up.State().Healthy() {
		t.Fatal("503 outside 200-399 counted as up")
	}
	if e := up.Snapshot().LastError; e != "status 503 outside 200-399" {
		t.Fatalf("last error %q", e)
	}
	tcp := NewChecker(Check{Type: "tcp", Rise: 1, Fall: 1}, []Target{{Record: down, Addr: dead}}, nil)
	tcp.Step(ctx)
	if down.State().Healthy() {
		t.Fatal("tcp check of a closed port counted as up")
	}
}

func TestCheckValidate(t *testing.T) {
	for _, c := range []Check{{Type: "udp"}, {Interval: time.Millisecond}, {StatusMin: 500, StatusMax: 200}, {Path: "x"}, {Rise: -1}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (Check{}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func ExampleRegistry() {
	reg := NewRegistry(nil, func(c Change) { fmt.Println(c.Addr, "healthy:", c.Healthy, "-", c.Reason) })
	r := reg.Get("10.0.0.1:80", "10.0.0.1:80")
	p := Passive{MaxFails: 1, CoolOff: time.Minute}
	r.ObserveProxy(false, "connection refused", p)
	fmt.Println(r.State().Healthy())
	// Output:
	// 10.0.0.1:80 healthy: false - ejected after proxy failures for 1m0s: connection refused
	// false
}

// TestRegistryRetain keeps the records a live table uses: the others leave
// the registry, stop their ejection timer and report no change; a retired
// record taken back reports its verdict again.
func TestRegistryRetain(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	var log changes
	reg := NewRegistry(clk, log.add)
	p := Passive{MaxFails: 1, CoolOff: time.Minute}
	kept, gone := reg.Get("kept", "10.0.0.1:80"), reg.Get("gone", "10.0.0.2:80")
	kept.SetDisabled(true)
	gone.ObserveProxy(false, "refused", p)
	if clk.Waiters() != 1 || log.count() != 2 {
		t.Fatalf("setup: %d timers, %d changes", clk.Waiters(), log.count())
	}
	reg.Retain([]*Record{kept})
	if reg.Len() != 1 || reg.Get("kept", "") != kept {
		t.Fatalf("registry holds %d records after Retain", reg.Len())
	}
	if clk.Waiters() != 0 {
		t.Fatal("retired record kept its ejection timer")
	}
	gone.ObserveProxy(true, "", p)
	gone.ObserveProxy(false, "refused", p)
	gone.SetDisabled(true)
	if log.count() != 2 || clk.Waiters() != 0 {
		t.Fatalf("retired record reported %d changes, armed %d timers", log.count()-2, clk.Waiters())
	}
	if !kept.Snapshot().Disabled {
		t.Fatal("kept record lost its manual disable")
	}
	gone.SetDisabled(false)
	reg.Retain([]*Record{kept, gone})
	if reg.Len() != 2 || !gone.State().Healthy() || log.count() != 3 {
		t.Fatalf("revived: %d records, healthy %v, %d changes", reg.Len(), gone.State().Healthy(), log.count())
	}
	if fresh := reg.Get("new", "10.0.0.3:80"); !fresh.State().Healthy() || reg.Len() != 3 {
		t.Fatal("new record")
	}
}
