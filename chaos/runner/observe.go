package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// status is the part of a node's /status the runner reads.
type status struct {
	Node struct {
		Name          string  `json:"name"`
		Ready         bool    `json:"ready"`
		NotReady      string  `json:"not_ready"`
		UptimeSeconds float64 `json:"uptime_seconds"`
	} `json:"node"`
	Config *struct {
		Version int64 `json:"version"`
	} `json:"config"`
	Members []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"members"`
	Ring *struct {
		Digest  string   `json:"digest"`
		Members []string `json:"members"`
	} `json:"ring"`
	Raft *struct {
		State    string `json:"state"`
		LeaderID string `json:"leader_id"`
	} `json:"raft"`
}

var adminClient = &http.Client{Timeout: 2 * time.Second}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func nodeStatus(ctx context.Context, n Node) (status, error) {
	var st status
	if n.Admin == "" {
		return st, fmt.Errorf("%s: no admin port", n.Container)
	}
	err := getJSON(ctx, "http://"+n.Admin+"/status", &st)
	return st, err
}

func (s status) alive() []string {
	var out []string
	for _, m := range s.Members {
		if m.State == "alive" {
			out = append(out, m.Name)
		}
	}
	sort.Strings(out)
	return out
}

// agreement says whether the given nodes agree: each answers and is
// ready, and all report the same alive members (exactly these nodes), the
// same ring digest over them, the same config version and the same raft
// leader. It returns why not.
func agreement(ctx context.Context, nodes []Node) (bool, string) {
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	want := strings.Join(names, ",")
	// Every node's /status at once, so that they describe one moment.
	sts, errs := make([]status, len(nodes)), make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sts[i], errs[i] = nodeStatus(ctx, n)
		}()
	}
	wg.Wait()
	var first string
	for i, n := range nodes {
		st, err := sts[i], errs[i]
		if err != nil {
			return false, err.Error()
		}
		if !st.Node.Ready {
			return false, n.Name + " not ready: " + st.Node.NotReady
		}
		if got := strings.Join(st.alive(), ","); got != want {
			return false, fmt.Sprintf("%s sees alive %s, want %s", n.Name, got, want)
		}
		if st.Ring == nil || len(st.Ring.Members) != len(nodes) {
			return false, n.Name + ": ring does not have every node"
		}
		if st.Config == nil || st.Raft == nil || st.Raft.LeaderID == "" {
			return false, n.Name + ": no config or no raft leader"
		}
		key := fmt.Sprintf("ring %s, config v%d, leader %s", st.Ring.Digest, st.Config.Version, st.Raft.LeaderID)
		if first == "" {
			first = key
		} else if key != first {
			return false, fmt.Sprintf("%s has %s, another node %s", n.Name, key, first)
		}
	}
	return true, first
}

// leaderOf asks the nodes for the raft leader's name.
func leaderOf(ctx context.Context, nodes []Node) string {
	for _, n := range nodes {
		if st, err := nodeStatus(ctx, n); err == nil && st.Raft != nil && st.Raft.LeaderID != "" {
			return st.Raft.LeaderID
		}
	}
	return ""
}

// sample is one /metrics reading of a node.
type sample struct {
	T          float64 `json:"t"` // seconds since the run started
	Goroutines float64 `json:"goroutines"`
	FDs        float64 `json:"fds"`
}

// sampler reads go_goroutines and process_open_fds from every running
// node's /metrics every interval.
type sampler struct {
	mu      sync.Mutex
	samples map[string][]sample
}

func (s *sampler) run(ctx context.Context, r *Run, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, n := range r.Nodes() {
			if !n.Running || n.Paused || n.Admin == "" {
				continue
			}
			g, fd, err := readMetrics(ctx, n.Admin)
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.samples[n.Name] = append(s.samples[n.Name], sample{T: r.Since(time.Now()), Goroutines: g, FDs: fd})
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func readMetrics(ctx context.Context, admin string) (g, fd float64, err error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+admin+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_goroutines":
			g, _ = strconv.ParseFloat(val, 64)
			found++
		case "process_open_fds":
			fd, _ = strconv.ParseFloat(val, 64)
			found++
		}
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("%s/metrics: go_goroutines or process_open_fds missing", admin)
	}
	return g, fd, sc.Err()
}
