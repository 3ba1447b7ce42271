package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// result is one client request.
type result struct {
	T       float64 `json:"t"`  // start, seconds since the run started
	Ms      float64 `json:"ms"` // latency
	Node    string  `json:"node"`
	Kind    string  `json:"kind"` // "proxy" or "limited"
	Status  int     `json:"status"`
	Err     string  `json:"err,omitempty"`
	Success bool    `json:"ok"`
}

// load sends rate requests per second, round-robin over the running nodes,
// each with a timeout, at most maxInFlight at once (a request over that is
// recorded as an error of the client, "saturated", and not sent).
type load struct {
	kind        string
	rate        int
	path        func(seq int) string
	ok          func(status int, body []byte) bool
	maxInFlight int

	mu      sync.Mutex
	results []result
}

var loadClient = &http.Client{
	Timeout: 2 * time.Second,
	Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	},
}

// originOK accepts the origin's answer to a proxied request.
func originOK(status int, body []byte) bool {
	return status == http.StatusOK && strings.HasPrefix(string(body), "origin ")
}

func (l *load) run(ctx context.Context, r *Run) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, l.maxInFlight)
	tick := time.NewTicker(time.Second / time.Duration(l.rate))
	defer tick.Stop()
	seq := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var targets []Node
		for _, n := range r.Nodes() {
			if n.Proxy != "" {
				targets = append(targets, n)
			}
		}
		if len(targets) == 0 {
			continue
		}
		n := targets[seq%len(targets)]
		url := "http://" + n.Proxy + l.path(seq)
		seq++
		start := time.Now()
		select {
		case sem <- struct{}{}:
		default:
			l.add(result{T: r.Since(start), Node: n.Name, Kind: l.kind, Err: "saturated"})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			l.add(l.one(r, n.Name, url, start))
		}()
	}
}

func (l *load) one(r *Run, node, url string, start time.Time) result {
	res := result{T: r.Since(start), Node: node, Kind: l.kind}
	resp, err := loadClient.Get(url)
	if err == nil {
		var body []byte
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		res.Status = resp.StatusCode
		res.Success = err == nil && l.ok(resp.StatusCode, body)
		if err == nil && !res.Success {
			err = fmt.Errorf("HTTP %d: %.80s", resp.StatusCode, body)
		}
	}
	if err != nil {
		res.Err = err.Error()
	}
	res.Ms = float64(time.Since(start).Microseconds()) / 1000
	return res
}

func (l *load) add(res result) {
	l.mu.Lock()
	l.results = append(l.results, res)
	l.mu.Unlock()
}

func (l *load) all() []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]result(nil), l.results...)
}
