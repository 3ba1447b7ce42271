package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/node/config"
)

// ExampleNode runs one node from its two files: a node file with one
// listener, and a cluster config routing every request to an origin.
func ExampleNode() {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the origin: %s", r.URL.Path)
	}))
	defer origin.Close()
	dir, _ := os.MkdirTemp("", "node-example")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(fmt.Sprintf(
		"upstreams:\n  - name: web\n    peers: [{addr: %s}]\nroutes:\n  - upstream: web\n", origin.Listener.Addr())), 0o644)
	os.WriteFile(filepath.Join(dir, "node.yaml"), []byte(
		"name: example\nadmin_addr: 127.0.0.1:0\nlisteners:\n  - {name: http, addr: 127.0.0.1:0}\ncluster_config: cluster.yaml\n"), 0o644)

	cfg, err := config.LoadNode(filepath.Join(dir, "node.yaml"))
	if err != nil {
		fmt.Println(err)
		return
	}
	n, err := node.New(cfg, node.Options{Log: slog.New(slog.DiscardHandler), AccessLog: io.Discard})
	if err == nil {
		err = n.Start()
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Shutdown(context.Background())

	resp, err := http.Get("http://" + n.ListenerAddrs()["http"] + "/hi")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 hello from the origin: /hi
}
