package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// guberCluster is gubernator instances on loopback, peers found by its
// member-list discovery, answering its HTTP API.
type guberCluster struct {
	bin, dir string
	procs    []*exec.Cmd
	http     []string
}

func startGubernator(bin string, n int) (*guberCluster, error) {
	dir, err := os.MkdirTemp("", "rlg")
	if err != nil {
		return nil, err
	}
	g := &guberCluster{bin: bin, dir: dir}
	var seed string
	for i := range n {
		// Gubernator's member-list discovery keys peers by IP and names
		// them by host name, so each instance gets a loopback address of
		// its own (127.0.0.0/8) and a host name of its own in a UTS
		// namespace (unshare needs root; the network stays the host's).
		ip := fmt.Sprintf("127.0.0.%d", 21+i)
		grpcAddr, httpAddr, ml := freePortOn(ip), freePortOn(ip), freePortOn(ip)
		if seed == "" {
			seed = ml
		}
		cmd := exec.Command("unshare", "--uts", "sh", "-c", fmt.Sprintf("hostname rlbench-g%d && exec %q", i+1, bin))
		cmd.Env = append(os.Environ(),
			"GUBER_GRPC_ADDRESS="+grpcAddr, "GUBER_HTTP_ADDRESS="+httpAddr, "GUBER_ADVERTISE_ADDRESS="+grpcAddr,
			"GUBER_INSTANCE_ID="+fmt.Sprintf("g%d", i+1), "GUBER_PEER_DISCOVERY_TYPE=member-list",
			"GUBER_MEMBERLIST_BIND_ADDRESS="+ml, "GUBER_MEMBERLIST_ADDRESS="+ml, // peers reach gRPC at GUBER_ADVERTISE_ADDRESS
			"GUBER_MEMBERLIST_KNOWN_NODES="+seed, "GUBER_LOG_LEVEL=warn")
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("g%d.log", i+1)))
		if err != nil {
			return g, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return g, err
		}
		g.procs = append(g.procs, cmd)
		g.http = append(g.http, httpAddr)
	}
	return g, g.waitPeers(n)
}

// waitPeers waits until every instance reports n healthy peers.
func (g *guberCluster) waitPeers(n int) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		ok := true
		for _, a := range g.http {
			var hc struct {
				Status    string `json:"status"`
				PeerCount int    `json:"peer_count"`
			}
			resp, err := http.Get("http://" + a + "/v1/HealthCheck")
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&hc)
				resp.Body.Close()
			}
			if err != nil || hc.Status != "healthy" || hc.PeerCount != n {
				ok = false
			}
		}
		if ok {
			return nil
		}
		time.Sleep(200 * time.Millisecond) // sleep-ok: polling gubernator's health check
	}
	return fmt.Errorf("gubernator did not see %d healthy peers within a minute (logs in %s)", n, g.dir)
}

// stop ends the instances by PID.
func (g *guberCluster) stop() {
	for _, p := range g.procs {
		p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range g.procs {
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
	os.RemoveAll(g.dir)
}

// guberCheck asks gubernator for one hit of key under a GLOBAL token
// bucket of limit per second, as a proxy in front of it would per request.
func guberCheck(key string, limit int) func(context.Context, *http.Client, string) (bool, error) {
	body := fmt.Sprintf(`{"requests":[{"name":"api","unique_key":%q,"hits":1,"limit":%d,"duration":1000,"algorithm":"TOKEN_BUCKET","behavior":"GLOBAL"}]}`, key, limit)
	return func(ctx context.Context, c *http.Client, target string) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+target+"/v1/GetRateLimits", bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return false, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("gubernator: HTTP %d %v", resp.StatusCode, err)
		}
		var out struct {
			Responses []struct {
				Status string `json:"status"`
				Error  string `json:"error"`
			} `json:"responses"`
		}
		if err := json.Unmarshal(b, &out); err != nil || len(out.Responses) != 1 || out.Responses[0].Error != "" {
			return false, fmt.Errorf("gubernator: %s", strings.TrimSpace(string(b)))
		}
		// Proto3 JSON leaves UNDER_LIMIT (0) out.
		return out.Responses[0].Status != "OVER_LIMIT", nil
	}
}
