package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pingora-go/pingora-go/membership"
)

// opts are the driver's flags.
type opts struct {
	bin, guber  string
	rate, limit int
	dur         time.Duration
	only        string
	keep        bool
}

func main() {
	var o opts
	flag.StringVar(&o.bin, "bin", "", "pingora-node binary (required)")
	flag.StringVar(&o.guber, "gubernator", "", "gubernator binary; empty skips the side-by-side runs")
	flag.IntVar(&o.rate, "rate", 3000, "offered requests per second")
	flag.IntVar(&o.limit, "limit", 1000, "the global limit, requests per second")
	flag.DurationVar(&o.dur, "duration", 30*time.Second, "length of each run")
	flag.StringVar(&o.only, "only", "accuracy,kill,scale,gubernator", "scenarios to run")
	flag.BoolVar(&o.keep, "keep", false, "keep the nodes' files and logs")
	flag.Parse()
	if o.bin == "" {
		log.Fatal("ratelimit: -bin is required")
	}
	origin, err := startOrigin()
	if err != nil {
		log.Fatal(err)
	}
	var rows []row
	for _, sc := range scenarios(o, origin) {
		if !strings.Contains(o.only, sc.kind) {
			continue
		}
		log.Printf("running %s", sc.name)
		r, err := sc.run()
		if err != nil {
			log.Fatalf("%s: %v", sc.name, err)
		}
		rows = append(rows, r)
		log.Printf("%s: %s", sc.name, r.summary(o.limit))
	}
	report(os.Stdout, o, rows)
}

// startOrigin serves 200 to everything on loopback, in this process.
func startOrigin() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	return ln.Addr().String(), nil
}

type scenario struct {
	kind, name string
	run        func() (row, error)
}

func scenarios(o opts, origin string) []scenario {
	var out []scenario
	for _, n := range []int{3, 5} {
		for _, spread := range []string{"even", "one node"} {
			out = append(out, scenario{"accuracy", fmt.Sprintf("pingora-node, %d nodes, load %s", n, spread),
				func() (row, error) { return accuracy(o, origin, n, spread) }})
		}
	}
	out = append(out,
		scenario{"kill", "pingora-node, 3 nodes, kill -9 of the key's owner at 10 s", func() (row, error) { return killOwner(o, origin, 3) }},
		scenario{"kill", "pingora-node, 5 nodes, kill -9 of the key's owner at 10 s", func() (row, error) { return killOwner(o, origin, 5) }},
		scenario{"scale", "pingora-node, scale 3 → 5 at 10 s, the key's owner moving", func() (row, error) { return scale(o, origin) }})
	for _, n := range []int{3, 5} {
		for _, spread := range []string{"even", "one node"} {
			out = append(out, scenario{"gubernator", fmt.Sprintf("gubernator v2.13.0 GLOBAL, %d nodes, load %s", n, spread),
				func() (row, error) { return gubernator(o, n, spread) }})
		}
	}
	return out
}

// row is one run: the admitted requests of every second, and which
// seconds are steady state.
type row struct {
	name        string
	secs        []counts
	steadyFrom  int // index of the first steady second
	event       int // index of the second of the kill or join (-1: none)
	lag         int64
	description string
}

// runLoad offers the load for warm + dur and returns the seconds wholly
// inside the run; at(t) is called once per second with the seconds gone.
func runLoad(o opts, g *load, every func(sec int)) []counts {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() { g.run(ctx); close(done) }()
	total := int(o.dur / time.Second)
	for s := 1; s <= total; s++ {
		time.Sleep(time.Until(start.Add(time.Duration(s) * time.Second))) // sleep-ok: the driver paces its scenario by the clock
		if every != nil {
			every(s)
		}
	}
	cancel()
	<-done
	first := start.Unix() + 1
	return g.series(first, first+int64(total)-2)
}

// startCluster starts nodes pingora-node processes and waits for their
// ring; the caller stops them.
func startCluster(o opts, origin string, nodes int) (*cluster, error) {
	c, err := newCluster(o.bin, origin, o.limit)
	if err != nil {
		return nil, err
	}
	for range nodes {
		if _, err := c.start(); err != nil {
			c.stop(o.keep)
			return nil, err
		}
	}
	if err := c.waitRing(nodes); err != nil {
		c.stop(true)
		return nil, err
	}
	return c, nil
}

func accuracy(o opts, origin string, nodes int, spread string) (row, error) {
	c, err := startCluster(o, origin, nodes)
	if err != nil {
		return row{}, err
	}
	defer c.stop(o.keep)
	targets := c.proxies()
	if spread != "even" {
		targets = targets[:1]
	}
	g := newLoad(o.rate, targets, proxyGet("k1"))
	secs := runLoad(o, g, nil)
	return row{name: fmt.Sprintf("pingora-node, %d nodes, load %s", nodes, spread), secs: secs, steadyFrom: 2, event: -1, lag: g.lag.Load()}, nil
}

func killOwner(o opts, origin string, nodes int) (row, error) {
	c, err := startCluster(o, origin, nodes)
	if err != nil {
		return row{}, err
	}
	defer c.stop(o.keep)
	g := newLoad(o.rate, c.proxies(), proxyGet("k1"))
	victim := ""
	secs := runLoad(o, g, func(s int) {
		if s == 10 {
			victim = c.owner("k1")
			if n := c.node(victim); n != nil {
				c.kill(n)
				g.setTargets(c.proxies())
			}
		}
	})
	return row{name: fmt.Sprintf("pingora-node, %d nodes, kill -9 of the owner (%s) at 10 s", nodes, victim), secs: secs, steadyFrom: 2, event: 9, lag: g.lag.Load()}, nil
}

func scale(o opts, origin string) (row, error) {
	c, err := startCluster(o, origin, 3)
	if err != nil {
		return row{}, err
	}
	defer c.stop(o.keep)
	key := movingKey()
	g := newLoad(o.rate, c.proxies(), proxyGet(key))
	var owners []string
	secs := runLoad(o, g, func(s int) {
		switch {
		case s == 9:
			owners = append(owners, c.owner(key))
		case s == 10:
			c.start()
			c.start()
		case s > 10 && len(c.proxies()) > len(*g.targets.Load()):
			if c.waitRing(5) == nil {
				g.setTargets(c.proxies())
				owners = append(owners, c.owner(key))
			}
		}
	})
	return row{name: fmt.Sprintf("pingora-node, scale 3 → 5 at 10 s (key %s, owner %s)", key, strings.Join(owners, " → ")),
		secs: secs, steadyFrom: 2, event: 9, lag: g.lag.Load()}, nil
}

// movingKey returns an API key whose owner on a ring of n1..n3 is not its
// owner on n1..n5 (the ring is membership's, as the nodes build it).
func movingKey() string {
	ring := func(n int) *membership.Ring {
		m := map[string]int{}
		for i := 1; i <= n; i++ {
			m["n"+strconv.Itoa(i)] = 1
		}
		return membership.NewRing(1, "", m)
	}
	r3, r5 := ring(3), ring(5)
	for i := 0; ; i++ {
		k := "k" + strconv.Itoa(i)
		a, _ := r3.Owner("api\x00" + k)
		b, _ := r5.Owner("api\x00" + k)
		if a != b {
			return k
		}
	}
}

func gubernator(o opts, nodes int, spread string) (row, error) {
	if o.guber == "" {
		return row{}, fmt.Errorf("-gubernator is not set")
	}
	gc, err := startGubernator(o.guber, nodes)
	if gc != nil {
		defer gc.stop()
	}
	if err != nil {
		return row{}, err
	}
	targets := gc.http
	if spread != "even" {
		targets = targets[:1]
	}
	g := newLoad(o.rate, targets, guberCheck("k1", o.limit))
	secs := runLoad(o, g, nil)
	return row{name: fmt.Sprintf("gubernator v2.13.0 GLOBAL token bucket, %d nodes, load %s", nodes, spread), secs: secs, steadyFrom: 2, event: -1, lag: g.lag.Load()}, nil
}
