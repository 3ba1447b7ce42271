package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/node/config"
)

// cmdDemo runs a node and two sample upstreams on loopback until Ctrl-C.
func cmdDemo(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "pingora-node demo takes no arguments")
		return 2
	}
	dir, err := os.MkdirTemp("", "pingora-demo-")
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node demo:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	var origins []*http.Server
	var peers []string
	for _, name := range []string{"alpha", "beta"} {
		srv, addr, err := startSampleUpstream(name)
		if err != nil {
			fmt.Fprintln(stderr, "pingora-node demo:", err)
			return 1
		}
		defer srv.Close()
		origins = append(origins, srv)
		peers = append(peers, addr)
	}
	var nodes []*node.Node
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, n := range nodes {
			n.Shutdown(ctx)
		}
	}()
	seed := ""
	for i := range demoNodes {
		n, err := startDemoNode(dir, i, peers, seed)
		if err != nil {
			fmt.Fprintln(stderr, "pingora-node demo:", err)
			return 1
		}
		nodes = append(nodes, n)
		if seed == "" {
			seed = n.Members().Addr()
		}
	}
	printDemoHelp(stdout, nodes, dir)
	sigs := make(chan os.Signal, 1) // one Ctrl-C is enough
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	signal.Stop(sigs)
	fmt.Fprintln(stdout, "\nstopping...")
	return 0
}

// demoNodes is how many nodes the demo cluster runs.
const demoNodes = 3

// startSampleUpstream serves a small origin that names itself.
func startSampleUpstream(name string) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", name)
		fmt.Fprintf(w, "hello from upstream %s: %s %s (%s, forwarded for %s)\n", name, r.Method, r.URL.RequestURI(), r.Proto, r.Header.Get("X-Forwarded-For"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return srv, ln.Addr().String(), nil
}

// freeAddr returns preferred when it can be bound, else a free port.
func freeAddr(preferred string) string {
	ln, err := net.Listen("tcp", preferred)
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return preferred
		}
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startDemoNode(dir string, i int, peers []string, seed string) (*node.Node, error) {
	cluster := fmt.Sprintf(`# demo cluster config: two upstreams behind one route
upstreams:
  - name: demo
    lb: round_robin
    health_check: {type: http, path: /, interval: 2s}
    peers:
      - addr: %s
      - addr: %s
routes:
  - host: "*"
    path_prefix: /
    upstream: demo
`, peers[0], peers[1])
	name := fmt.Sprintf("demo-%d", i+1)
	join := ""
	if seed != "" {
		join = "join: [" + seed + "]\n"
	}
	nodeFile := fmt.Sprintf(`name: %s
admin_addr: %s
listeners:
  - name: http
    addr: %s
    h2c: true
cluster_config: cluster.yaml
log_level: warn
gossip_addr: 127.0.0.1:0
gossip_profile: fast
cluster_name: demo
%supgrade_socket: %s.sock
`, name, freeAddr(fmt.Sprintf("127.0.0.1:%d", 9090+i)), freeAddr(fmt.Sprintf("127.0.0.1:%d", 8080+i)), join, name)
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(cluster), 0o644); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(nodeFile), 0o644); err != nil {
		return nil, err
	}
	cfg, err := config.LoadNode(path)
	if err != nil {
		return nil, err
	}
	n, err := node.New(cfg, node.Options{Version: buildVersion()})
	if err != nil {
		return nil, err
	}
	if err := n.Start(); err != nil {
		return nil, errors.Join(err, errors.New("is another pingora-node running?"))
	}
	return n, nil
}

func printDemoHelp(w io.Writer, nodes []*node.Node, dir string) {
	fmt.Fprintf(w, "pingora-node demo is running: %d nodes in one gossip cluster, two sample upstreams, round robin.\nconfig files: %s\n\n", len(nodes), dir)
	for _, n := range nodes {
		fmt.Fprintf(w, "  %s  proxy http://%s  admin http://%s\n", n.Status().Node.Name, n.ListenerAddrs()["http"], n.AdminAddr())
	}
	proxyAddr, admin := nodes[0].ListenerAddrs()["http"], nodes[0].AdminAddr()
	fmt.Fprintf(w, `
Try:
  curl -i http://%[1]s/hello                        # HTTP/1.1, alternates alpha/beta
  curl -i --http2-prior-knowledge http://%[1]s/h2   # HTTP/2 cleartext (h2c)
  curl http://%[2]s/status                          # node status (JSON): members, ring, upstreams
  curl -s http://%[2]s/metrics | grep pingora_      # Prometheus metrics
  go run ./cmd/pingora-node members --admin http://%[2]s
  go run ./cmd/pingora-node status --admin http://%[2]s

Press Ctrl-C to stop.
`, proxyAddr, admin)
}
