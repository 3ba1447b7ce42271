package node

import (
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/config"
)

// TestProxyConfigSplice: the node file's splice setting reaches the
// engine; unset keeps splicing on.
func TestProxyConfigSplice(t *testing.T) {
	off, on := false, true
	for _, tc := range []struct {
		splice       *bool
		wantNoSplice bool
	}{{nil, false}, {&on, false}, {&off, true}} {
		if got := proxyConfig(&config.Node{Splice: tc.splice}, &cachePart{}).NoSplice; got != tc.wantNoSplice {
			t.Errorf("splice %v: NoSplice %v, want %v", tc.splice, got, tc.wantNoSplice)
		}
	}
}

// TestProxyConfigTunnelIdle: downstream.tunnel_idle_timeout reaches the
// engine (a node could not set it: every idle WebSocket tunnel lived for
// the engine's default hour), and a negative one is refused.
func TestProxyConfigTunnelIdle(t *testing.T) {
	n, err := config.ParseNode("node.yaml", []byte("name: n1\ncluster_config: c.yaml\nlisteners: [{name: http, addr: \"127.0.0.1:0\"}]\ndownstream:\n  tunnel_idle_timeout: 5m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := proxyConfig(n, &cachePart{}).Downstream.TunnelIdleTimeout; got != 5*time.Minute {
		t.Fatalf("TunnelIdleTimeout %v, want 5m", got)
	}
	if _, err := config.ParseNode("node.yaml", []byte("name: n1\ncluster_config: c.yaml\nlisteners: [{name: http, addr: \"127.0.0.1:0\"}]\ndownstream:\n  tunnel_idle_timeout: -1s\n")); err == nil ||
		!strings.Contains(err.Error(), "downstream.tunnel_idle_timeout") {
		t.Fatalf("a negative tunnel_idle_timeout: %v", err)
	}
}

// TestProxyConfigMinRates: downstream.min_send_rate, min_recv_rate and
// min_rate_grace reach the engine; unset keeps the engine's defaults
// (on), 0 turns a minimum off, a negative one is refused.
func TestProxyConfigMinRates(t *testing.T) {
	const head = "name: n1\ncluster_config: c.yaml\nlisteners: [{name: http, addr: \"127.0.0.1:0\"}]\n"
	for _, tc := range []struct {
		yaml               string
		wantSend, wantRecv int
		wantGrace          time.Duration
	}{
		{"", 0, 0, 0},
		{"downstream:\n  min_send_rate: 0\n  min_recv_rate: 1000\n  min_rate_grace: 10s\n", -1, 1000, 10 * time.Second},
	} {
		n, err := config.ParseNode("node.yaml", []byte(head+tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		d := proxyConfig(n, &cachePart{}).Downstream
		if d.MinSendRate != tc.wantSend || d.MinRecvRate != tc.wantRecv || d.MinRateGrace != tc.wantGrace {
			t.Errorf("%q: engine rates %d, %d, grace %v; want %d, %d, %v", tc.yaml, d.MinSendRate, d.MinRecvRate, d.MinRateGrace, tc.wantSend, tc.wantRecv, tc.wantGrace)
		}
	}
	if _, err := config.ParseNode("node.yaml", []byte(head+"downstream:\n  min_send_rate: -5\n")); err == nil ||
		!strings.Contains(err.Error(), "downstream.min_send_rate") {
		t.Fatalf("a negative min_send_rate: %v", err)
	}
}
