package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAddressInUseNamesTheSetting: a port already taken stops the start
// with the setting and flag to change, not only the kernel's "bind:
// address already in use" (an operator starting a second node on a host
// with the shared node file met "admin: listen tcp 0.0.0.0:9090: bind:
// address already in use" and nothing else).
func TestAddressInUseNamesTheSetting(t *testing.T) {
	a := origin(t, "a")
	for _, tc := range []struct{ setting, flag, file string }{
		{"admin_addr", "--admin-addr", "admin_addr: %s\nlisteners: [{name: http, addr: 127.0.0.1:0}]\n"},
		{"listeners[].addr", "--listen", "admin_addr: 127.0.0.1:0\nlisteners: [{name: http, addr: %s}]\n"},
		{"cluster_addr", "--cluster-addr", "admin_addr: 127.0.0.1:0\nlisteners: [{name: http, addr: 127.0.0.1:0}]\ngossip_addr: 127.0.0.1:0\ncluster_addr: %s\n"},
		{"gossip_addr", "--gossip-addr", "admin_addr: 127.0.0.1:0\nlisteners: [{name: http, addr: 127.0.0.1:0}]\ngossip_addr: %s\ncluster_addr: 127.0.0.1:0\n"},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()
			dir := t.TempDir()
			body := "name: n1\ncluster_config: cluster.yaml\ngossip_profile: fast\ngrace_period: 1s\nupgrade_socket: " + filepath.Join(dir, "up.sock") + "\n" +
				fmt.Sprintf(tc.file, taken.Addr())
			if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(clusterFor(a)), 0o644); err != nil {
				t.Fatal(err)
			}
			n := newNode(t, filepath.Join(dir, "node.yaml"))
			err = n.Start()
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				n.Shutdown(ctx)
				cancel()
				t.Fatalf("started on a taken %s", tc.setting)
			}
			want := fmt.Sprintf("another address with %s (flag %s)", tc.setting, tc.flag)
			if !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q\nwant the kernel's reason and %q", err, want)
			}
		})
	}
}
