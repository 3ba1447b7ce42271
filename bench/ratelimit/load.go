package main

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// counts are one wall-clock second of a load run, by the second the
// request was sent in.
type counts struct {
	offered, admitted, denied, failed int64
}

// load offers rate requests per second, round-robin over its targets
// (which may change while it runs), and counts each second's outcomes.
type load struct {
	rate    int
	targets atomic.Pointer[[]string]
	do      func(ctx context.Context, client *http.Client, target string) (admitted bool, err error)
	client  *http.Client

	mu  sync.Mutex
	sec map[int64]*counts
	lag atomic.Int64 // offers dropped because the workers fell behind
}

func newLoad(rate int, targets []string, do func(context.Context, *http.Client, string) (bool, error)) *load {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true, IdleConnTimeout: time.Minute}
	g := &load{rate: rate, do: do, sec: map[int64]*counts{}, client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
	g.setTargets(targets)
	return g
}

func (g *load) setTargets(t []string) {
	c := append([]string(nil), t...)
	g.targets.Store(&c)
}

func (g *load) add(sec int64, f func(*counts)) {
	g.mu.Lock()
	c := g.sec[sec]
	if c == nil {
		c = &counts{}
		g.sec[sec] = c
	}
	f(c)
	g.mu.Unlock()
}

// run offers the load until ctx ends: a tick every millisecond hands
// rate/1000 requests to a pool of workers; an offer the pool cannot take
// is counted as lag, not sent.
func (g *load) run(ctx context.Context) {
	jobs := make(chan time.Time, 4096) // about a second of slack at the rates measured
	var wg sync.WaitGroup
	for range 192 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.worker(ctx, jobs)
		}()
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	acc := 0.0
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case now := <-t.C:
			for acc += float64(g.rate) / 1000; acc >= 1; acc-- {
				select {
				case jobs <- now:
				default:
					g.lag.Add(1)
				}
			}
		}
	}
	close(jobs)
	wg.Wait()
}

func (g *load) worker(ctx context.Context, jobs <-chan time.Time) {
	var n uint64
	for at := range jobs {
		ts := *g.targets.Load()
		n++
		sec := at.Unix()
		if ctx.Err() != nil {
			continue
		}
		ok, err := g.do(ctx, g.client, ts[int(n+uint64(at.UnixNano()))%len(ts)])
		g.add(sec, func(c *counts) {
			c.offered++
			switch {
			case err != nil:
				c.failed++
			case ok:
				c.admitted++
			default:
				c.denied++
			}
		})
	}
}

// series returns the counts of the seconds from first to last, in order.
func (g *load) series(first, last int64) []counts {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []counts
	for s := first; s <= last; s++ {
		if c := g.sec[s]; c != nil {
			out = append(out, *c)
		} else {
			out = append(out, counts{})
		}
	}
	return out
}

// proxyGet is a request through a pingora-node proxy carrying the API key.
func proxyGet(key string) func(context.Context, *http.Client, string) (bool, error) {
	return func(ctx context.Context, c *http.Client, target string) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+target+"/", nil)
		req.Header.Set("X-Api-Key", key)
		resp, err := c.Do(req)
		if err != nil {
			return false, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return true, nil
		case http.StatusTooManyRequests:
			return false, nil
		}
		return false, errStatus(resp.StatusCode)
	}
}

type errStatus int

func (e errStatus) Error() string { return "status " + http.StatusText(int(e)) }
