package config

import (
	"net/netip"
	"strings"
	"testing"
)

func hostOf(def string, addrs ...string) Host {
	h := Host{DefaultIface: def}
	for _, a := range addrs {
		iface, ip, _ := strings.Cut(a, "=")
		h.Addrs = append(h.Addrs, HostAddr{Iface: iface, IP: netip.MustParseAddr(ip)})
	}
	return h
}

func TestPrivateIP(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		host Host
		want string // IP, or "error: <substring>"
	}{
		{"default route wins", hostOf("eth0", "lo=127.0.0.1", "docker0=172.17.0.1", "eth0=10.0.0.5"), "10.0.0.5"},
		{"first of the default route", hostOf("eth0", "eth0=192.168.1.9", "eth0=192.168.1.10"), "192.168.1.9"},
		{"only private, no default route", hostOf("", "lo=127.0.0.1", "eth0=10.213.4.2", "eth0=fe80::1"), "10.213.4.2"},
		{"public default route, one private elsewhere", hostOf("eth0", "eth0=203.0.113.7", "eth1=10.1.2.3"), "10.1.2.3"},
		{"shared address space", hostOf("", "tailscale0=100.101.102.103"), "100.101.102.103"},
		{"IPv6 ULA when no IPv4", hostOf("", "lo=::1", "eth0=fd12::5", "eth0=fe80::5"), "fd12::5"},
		{"IPv4 before IPv6", hostOf("", "eth0=fd12::5", "eth0=10.0.0.8"), "10.0.0.8"},
		{"IPv4-mapped is IPv4", hostOf("", "eth0=::ffff:10.9.8.7"), "10.9.8.7"},
		{"several, none on the default route", hostOf("eth2", "docker0=172.17.0.1", "eth0=10.0.0.5", "eth2=203.0.113.1"),
			"error: several private addresses (172.17.0.1 on docker0, 10.0.0.5 on eth0)"},
		{"none private", hostOf("eth0", "lo=127.0.0.1", "eth0=203.0.113.1", "eth0=169.254.1.1"), "error: no private address"},
		{"no interfaces", Host{}, "error: no private address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ip, err := tc.host.PrivateIP()
			if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("got %v, %v; want error containing %q", ip, err, want)
				}
				return
			}
			if err != nil || ip.String() != tc.want {
				t.Fatalf("got %v, %v; want %s", ip, err, tc.want)
			}
		})
	}
}

// nodeWith builds a valid node (defaults applied) from a YAML fragment.
func nodeWith(t *testing.T, extra string) *Node {
	t.Helper()
	n, err := ParseNode("n.yaml", []byte("name: n1\nlisteners: [{name: http, addr: 0.0.0.0:8080}]\ncluster_config: c.yaml\n"+extra))
	if err != nil {
		t.Fatalf("%s: %v", extra, err)
	}
	return n
}

func TestDefaultAddresses(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, extra, gossip, cluster, raft string }{
		{"standalone raft stays on loopback", "data_dir: d\n", "", "127.0.0.1:7947", ""},
		{"join binds every address", "join: [10.0.0.1:7946]\ndata_dir: d\nadmin_token: x\n", "0.0.0.0:7946", "0.0.0.0:7947", ""},
		{"gossip alone opens the cluster port", "join: [10.0.0.1:7946]\n", "0.0.0.0:7946", "0.0.0.0:7947", ""},
		{"cluster port follows the gossip IP", "gossip_addr: 127.0.0.12:7946\ndata_dir: d\n", "127.0.0.12:7946", "127.0.0.12:7947", ""},
		{"cluster port follows a v6 gossip IP", "gossip_addr: '[fd00::2]:7946'\ndata_dir: d\n", "[fd00::2]:7946", "[fd00::2]:7947", ""},
		{"no host means every address", "gossip_addr: ':7946'\ndata_dir: d\n", ":7946", ":7947", ""},
		{"bind_addr sets both", "bind_addr: 10.0.0.5\njoin: [10.0.0.1:7946]\ndata_dir: d\n", "10.0.0.5:7946", "10.0.0.5:7947", ""},
		{"bind_addr under an explicit gossip_addr", "bind_addr: 10.0.0.5\ngossip_addr: 10.0.0.6:7000\ndata_dir: d\n", "10.0.0.6:7000", "10.0.0.5:7947", ""},
		{"explicit raft_addr: a port of its own", "gossip_addr: 127.0.0.12:7946\nraft_addr: 127.0.0.12:8000\ndata_dir: d\n", "127.0.0.12:7946", "127.0.0.12:7947", "127.0.0.12:8000"},
		{"no gossip, no raft: no cluster port", "", "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := nodeWith(t, tc.extra)
			if n.GossipAddr != tc.gossip || n.ClusterAddr != tc.cluster || n.RaftAddr != tc.raft {
				t.Fatalf("gossip %q cluster %q raft %q; want %q %q %q", n.GossipAddr, n.ClusterAddr, n.RaftAddr, tc.gossip, tc.cluster, tc.raft)
			}
			if n.RaftShared() != (tc.raft == "") {
				t.Fatalf("RaftShared() = %v with raft_addr %q", n.RaftShared(), n.RaftAddr)
			}
		})
	}
}

func TestResolveAdvertise(t *testing.T) {
	t.Parallel()
	lan := hostOf("eth0", "lo=127.0.0.1", "eth0=10.0.0.5", "docker0=172.17.0.1")
	type bound struct{ raft, cluster, admin, proxy string }
	cases := []struct {
		name, extra string
		host        Host
		gossip      string
		bound, want bound
	}{
		{"wildcard binds advertise the private IP", "join: [10.0.0.1:7946]\ndata_dir: d\nadmin_addr: 0.0.0.0:9090\nadmin_token: x\ncluster_addr: 0.0.0.0:7948\n", lan,
			"10.0.0.5:7946", bound{"[::]:7947", "0.0.0.0:7948", "[::]:9090", "[::]:8080"}, bound{"10.0.0.5:7947", "10.0.0.5:7948", "10.0.0.5:9090", "10.0.0.5:8080"}},
		{"loopback admin not advertised to remote peers", "join: [10.0.0.1:7946]\ndata_dir: d\n", lan,
			"10.0.0.5:7946", bound{"[::]:7947", "", "127.0.0.1:9090", "127.0.0.1:8080"}, bound{"10.0.0.5:7947", "", "", ""}},
		{"specific gossip IP", "gossip_addr: 127.0.0.11:7946\ndata_dir: d\n", Host{},
			"127.0.0.11:7946", bound{"127.0.0.11:7947", "", "127.0.0.1:9090", "0.0.0.0:8080"}, bound{"127.0.0.11:7947", "", "127.0.0.1:9090", "127.0.0.11:8080"}},
		{"advertise_addr IP only", "join: [10.0.0.1:7946]\nadvertise_addr: 192.0.2.7\ndata_dir: d\n", lan,
			"192.0.2.7:7946", bound{"[::]:7947", "", "", ""}, bound{"192.0.2.7:7947", "", "", ""}},
		{"advertise_addr with a port (node files before issue 12)", "join: [10.0.0.1:7946]\nadvertise_addr: 192.0.2.7:17946\ndata_dir: d\n", lan,
			"192.0.2.7:17946", bound{"[::]:7947", "", "", ""}, bound{"192.0.2.7:7947", "", "", ""}},
		{"a specific bind keeps its IP", "join: [10.0.0.1:7946]\nadvertise_addr: 192.0.2.7\nraft_addr: 10.0.0.5:7947\ndata_dir: d\n", lan,
			"192.0.2.7:7946", bound{"10.0.0.5:7947", "", "", ""}, bound{"10.0.0.5:7947", "", "", ""}},
		{"per-port overrides", "join: [10.0.0.1:7946]\ndata_dir: d\nadmin_token: x\nraft_addr: 0.0.0.0:7947\nraft_advertise_addr: 198.51.100.1:17947\nadmin_advertise_addr: admin.example:443\ncluster_addr: 0.0.0.0:7948\ncluster_advertise_addr: 198.51.100.1:17948\n", lan,
			"10.0.0.5:7946", bound{"[::]:7947", "[::]:7948", "127.0.0.1:9090", ""}, bound{"198.51.100.1:17947", "198.51.100.1:17948", "admin.example:443", ""}},
		{"gossip port 0 stays 0 (the bound port)", "gossip_addr: 127.0.0.1:0\n", Host{},
			"127.0.0.1:0", bound{}, bound{}},
		{"no gossip: loopback for wildcard binds", "data_dir: d\nraft_addr: 0.0.0.0:7947\n", Host{},
			"", bound{"[::]:7947", "", "127.0.0.1:9090", "[::]:8080"}, bound{"127.0.0.1:7947", "", "127.0.0.1:9090", "127.0.0.1:8080"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := nodeWith(t, tc.extra).ResolveAdvertise(tc.host)
			if err != nil {
				t.Fatal(err)
			}
			got := bound{a.Raft(tc.bound.raft), a.Cluster(tc.bound.cluster), a.Admin(tc.bound.admin), a.Addr(tc.bound.proxy)}
			if a.Gossip != tc.gossip || got != tc.want {
				t.Fatalf("gossip %q %+v\nwant   %q %+v", a.Gossip, got, tc.gossip, tc.want)
			}
		})
	}
}

func TestResolveAdvertiseNoPrivateIP(t *testing.T) {
	t.Parallel()
	n := nodeWith(t, "join: [10.0.0.1:7946]\n")
	_, err := n.ResolveAdvertise(hostOf("eth0", "eth0=203.0.113.4"))
	if err == nil || !strings.Contains(err.Error(), "advertise_addr: gossip_addr 0.0.0.0:7946 binds every address, and this host has no private address") ||
		!strings.Contains(err.Error(), "set advertise_addr") {
		t.Fatalf("got %v", err)
	}
}

// TestRefusesUnreachable: what a node advertises must be reachable by
// nodes on other hosts; the error names the setting to change.
func TestRefusesUnreachable(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, extra, want string }{
		{"loopback raft, wildcard gossip", "join: [10.0.0.1:7946]\ndata_dir: d\nraft_addr: 127.0.0.1:7947\n",
			`n.yaml:6: raft_addr: 127.0.0.1:7947 is a loopback address, but the other nodes reach this node on this host's private address (gossip_addr 0.0.0.0:7946 binds every address), so they could not reach its raft; leave raft_addr unset`},
		{"loopback raft, specific gossip", "gossip_addr: 10.0.0.5:7946\ndata_dir: d\nraft_addr: localhost:7947\n",
			`raft_addr: localhost:7947 is a loopback address, but the other nodes reach this node at 10.0.0.5:7946`},
		{"loopback raft, advertised gossip", "gossip_addr: 127.0.0.1:7946\nadvertise_addr: 10.0.0.5\ndata_dir: d\nraft_addr: 127.0.0.1:7947\n",
			`raft_addr: 127.0.0.1:7947 is a loopback address, but the other nodes reach this node at 10.0.0.5`},
		{"loopback cluster RPC", "join: [10.0.0.1:7946]\ncluster_addr: 127.0.0.1:7948\n",
			`cluster_addr: 127.0.0.1:7948 is a loopback address, but the other nodes reach this node on this host's private address (gossip_addr 0.0.0.0:7946 binds every address), so they could not reach its cluster RPC; set cluster_addr to an address the other nodes reach`},
		{"loopback raft advertise override", "join: [10.0.0.1:7946]\ndata_dir: d\nraft_addr: 0.0.0.0:7947\nraft_advertise_addr: 127.0.0.1:7947\n",
			`raft_advertise_addr: 127.0.0.1:7947 is a loopback address`},
		{"loopback admin advertise override", "join: [10.0.0.1:7946]\nadmin_advertise_addr: '[::1]:9090'\n",
			`admin_advertise_addr: [::1]:9090 is a loopback address, but the other nodes reach this node on this host's private address (gossip_addr 0.0.0.0:7946 binds every address), so they could not reach its admin API; set admin_advertise_addr to an address the other nodes reach, or leave it unset`},
		{"loopback gossip, seeds on other hosts", "gossip_addr: 127.0.0.1:7999\njoin: [10.0.0.1:7946, 10.0.0.2:7946]\n",
			`gossip_addr: 127.0.0.1:7999 is a loopback address, but join[0] 10.0.0.1:7946 is not: a node there could not reach this node's gossip; set gossip_addr to an address the other nodes reach (0.0.0.0 binds every address), or advertise_addr`},
		{"advertised loopback, seed on another host", "gossip_addr: 0.0.0.0:7946\nadvertise_addr: 127.0.0.1\njoin: [127.0.0.2:7946, '[2001:db8::1]:7946']\n",
			`advertise_addr: 127.0.0.1 is a loopback address, but join[1] [2001:db8::1]:7946 is not: a node there could not reach`},
		{"wildcard advertise", "join: [10.0.0.1:7946]\nadvertise_addr: 0.0.0.0\n", `advertise_addr: "0.0.0.0" is a wildcard address`},
		{"name as advertise", "join: [10.0.0.1:7946]\nadvertise_addr: node1.example\n", `advertise_addr: "node1.example": "node1.example" is not an IP address`},
		{"raft advertise without raft_addr", "data_dir: d\nraft_advertise_addr: 10.0.0.5:7947\n", `raft_advertise_addr: raft shares the cluster port`},
		{"wildcard raft advertise", "data_dir: d\nraft_addr: 127.0.0.1:7947\nraft_advertise_addr: 0.0.0.0:7947\n", `raft_advertise_addr: "0.0.0.0:7947": name the host and port`},
		{"bind_addr with a port", "bind_addr: 10.0.0.5:7946\n", `bind_addr: "10.0.0.5:7946" is not an IP address`},
		{"gossip on a name", "gossip_addr: node1.example:7946\n", `gossip_addr: "node1.example:7946": "node1.example" is not an IP address`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNode("n.yaml", []byte("name: n1\nlisteners: [{name: http, addr: 0.0.0.0:8080}]\ncluster_config: c.yaml\n"+tc.extra))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
	// Loopback everything is fine when gossip is loopback too: one host.
	nodeWith(t, "gossip_addr: 127.0.0.1:7946\ndata_dir: d\nraft_addr: 127.0.0.1:7947\ncluster_addr: 127.0.0.1:7948\n")
	// Loopback gossip with loopback seeds (several nodes on one host), or
	// seeds named by DNS (which may resolve to this host), is fine.
	nodeWith(t, "gossip_addr: 127.0.0.11:7946\njoin: [127.0.0.11:7946, 127.0.0.12:7946, 'localhost:7947']\n")
	nodeWith(t, "gossip_addr: 127.0.0.1:7946\njoin: [seed.internal:7946]\n")
	// A non-loopback raft with loopback gossip is reachable from this host.
	nodeWith(t, "gossip_addr: 127.0.0.1:7946\ndata_dir: d\nraft_addr: 0.0.0.0:7947\nadmin_token: x\n")
}

// TestBindAddrNotAnIP: "bind_addr: eth0" in a shared node file was refused
// twice, once rightly under bind_addr and once as "n.yaml:1: gossip_addr:
// \"eth0:7946\": \"eth0\" is not an IP address", a setting the file did not
// have, at a line that was not it: gossip_addr had been derived from it.
func TestBindAddrNotAnIP(t *testing.T) {
	_, err := ParseNode("n.yaml", []byte("name: n1\nlisteners: [{name: http, addr: 0.0.0.0:8080}]\ncluster_config: c.yaml\n"+
		"join: [10.0.0.1:7946]\ndata_dir: d\nadmin_token: x\nbind_addr: eth0\n"))
	if err == nil || !strings.Contains(err.Error(), `n.yaml:7: bind_addr: "eth0" is not an IP address`) ||
		strings.Contains(err.Error(), "gossip_addr") || strings.Contains(err.Error(), "cluster_addr") {
		t.Fatalf("error %v\nwant only the bind_addr line", err)
	}
}

func TestDefaultRouteIface(t *testing.T) {
	t.Parallel()
	route := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth1\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"eth0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
	if got := defaultRouteIface(strings.NewReader(route)); got != "eth0" {
		t.Fatalf("got %q", got)
	}
	if got := defaultRouteIface(strings.NewReader(route[:strings.LastIndex(route[:len(route)-1], "\n")+1])); got != "" {
		t.Fatalf("no default route: got %q", got)
	}
}
