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

// TestAddressNotOnThisHost: a node file copied from another host (its
// gossip_addr names that host's IP) stopped the start with "cluster_addr:
// listen tcp 10.77.7.1:7947: bind: cannot assign requested address":
// cluster_addr was never set (it takes gossip_addr's IP), and nothing said
// which setting to change or which addresses the host has.
func TestAddressNotOnThisHost(t *testing.T) {
	const foreign = "198.51.100.7" // TEST-NET-2: on no interface here
	if ln, err := net.Listen("tcp", foreign+":0"); err == nil {
		ln.Close()
		t.Skip(foreign + " can be bound here (ip_nonlocal_bind, or the address is assigned)")
	}
	dir := t.TempDir()
	body := "name: n1\ncluster_config: cluster.yaml\ngossip_profile: fast\ngrace_period: 1s\nupgrade_socket: " + filepath.Join(dir, "up.sock") + "\n" +
		"admin_addr: 127.0.0.1:0\nlisteners: [{name: http, addr: 127.0.0.1:0}]\ngossip_addr: " + foreign + ":0\n"
	if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(clusterFor(origin(t, "a"))), 0o644); err != nil {
		t.Fatal(err)
	}
	n := newNode(t, filepath.Join(dir, "node.yaml"))
	err := n.Start()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n.Shutdown(ctx)
		cancel()
		t.Fatal("started on an address of no interface")
	}
	for _, want := range []string{"cannot assign requested address", "no interface of this host has that IP",
		"this host has ", "127.0.0.1", "with cluster_addr (flag --cluster-addr), or, when cluster_addr is unset, bind_addr or gossip_addr, whose IP it takes"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q\nwant it to contain %q", err, want)
		}
	}
}
