package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Node is the node file: what one node is and where it listens.
type Node struct {
	// Name identifies the node in the cluster: letters, digits, '.', '_'
	// and '-', at most 64 (default: the host name).
	Name string `yaml:"name"`
	// AdminAddr is the admin/status server address (default 127.0.0.1:9090).
	AdminAddr string `yaml:"admin_addr"`
	// AdminAdvertiseAddr is the admin "host:port" advertised to the other
	// nodes, which show it in members and read its /status for the
	// cluster page (default: from AdminAddr, as for every port; a loopback
	// AdminAddr is not advertised to remote peers). Forwarded config writes
	// go over the cluster port, not to it.
	AdminAdvertiseAddr string `yaml:"admin_advertise_addr"`
	// AdminToken, when set, must be sent as "Authorization: Bearer <token>"
	// on every admin request that changes state. Without it, such requests
	// are accepted only from loopback clients.
	AdminToken string `yaml:"admin_token"`
	// Listeners are the proxy listeners (at least one).
	Listeners []Listener `yaml:"listeners"`
	// ClusterConfig is the path of the cluster config file (required until
	// the config is replicated), relative to the node file.
	ClusterConfig string `yaml:"cluster_config"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `yaml:"log_level"`
	// AccessLog writes one JSON line per request to stdout (default false).
	AccessLog bool `yaml:"access_log"`
	// GracePeriod bounds how long a stopping node waits for requests in
	// flight (default 30s).
	GracePeriod time.Duration `yaml:"grace_period"`
	// Via adds "Via: 1.1 <via>" to proxied messages (default "": none).
	Via string `yaml:"via"`
	// Splice moves response bodies from an HTTP/1.1 upstream to an
	// HTTP/1.1 client, both over plain TCP, with splice(2) on Linux when
	// nothing needs to see them (no cache fill, no body filter), so the
	// bytes never enter the process (default true; false copies them).
	Splice *bool `yaml:"splice"`
	// Downstream bounds client connections; zero fields keep the engine's
	// defaults.
	Downstream Downstream `yaml:"downstream"`
	// CacheMemoryBytes caps the memory of the node's HTTP cache, shared
	// by every route that caches: bodies, heads and keys; one object is at
	// most an eighth of it (default 268435456, 256 MiB; at least 1 MiB).
	CacheMemoryBytes int64 `yaml:"cache_memory_bytes"`
	// Join lists seed gossip addresses ("host:port"; DNS names are resolved
	// on every try). Setting it, or GossipAddr, makes the node a cluster
	// member (default: none, a standalone node). A node may list itself: one
	// node file can serve every node.
	Join []string `yaml:"join"`
	// BindAddr is the IP the cluster ports bind to when their own setting
	// is unset: gossip (port 7946) and the cluster port (7947, RPC and
	// raft) (default: GossipAddr's
	// IP; else 0.0.0.0 when Join is set, 127.0.0.1 otherwise).
	BindAddr string `yaml:"bind_addr"`
	// GossipAddr is the gossip "ip:port", TCP and UDP (default
	// BindAddr:7946 when Join is set; unset and no Join: no gossip).
	GossipAddr string `yaml:"gossip_addr"`
	// AdvertiseAddr is the IP ("ip") or gossip address ("ip:port") the
	// other nodes reach this one at; its IP is also advertised for every
	// port bound to all addresses (default: GossipAddr's IP, or the host's
	// private IP when gossip binds 0.0.0.0). See advertise.go.
	AdvertiseAddr string `yaml:"advertise_addr"`
	// ClusterAddr is the cluster port, "host:port": node-to-node RPC and,
	// unless RaftAddr gives it a port of its own, raft, told apart by
	// their first byte (default BindAddr:7947 when the node gossips or
	// replicates its config; else none).
	ClusterAddr string `yaml:"cluster_addr"`
	// ClusterAdvertiseAddr is the cluster port's "host:port" the others
	// dial (default: from ClusterAddr, as for every port).
	ClusterAdvertiseAddr string `yaml:"cluster_advertise_addr"`
	// ClusterName is gossiped as the memberlist label: nodes of another
	// cluster cannot join (default "pingora").
	ClusterName string `yaml:"cluster_name"`
	// GossipKey is a base64 AES key (16, 24 or 32 bytes) encrypting gossip
	// (default none: plaintext gossip).
	GossipKey string `yaml:"gossip_key"`
	// GossipProfile is "lan" (failure detection in 6-7 s, up to 25 s when
	// members are slow to confirm a suspicion; see README) or "fast"
	// (about 1 s, for tests and demos) (default lan).
	GossipProfile string `yaml:"gossip_profile"`
	// Zone is the node's failure domain, gossiped (default "").
	Zone string `yaml:"zone"`
	// RingWeight scales the node's share of the cluster ring, 1-100
	// (default 1).
	RingWeight int `yaml:"ring_weight"`
	// ReapAfter is how long a failed or departed member stays in the
	// member list (/status, "members") before it is forgotten; Consul's
	// reconnect_timeout is 72h (default 24h).
	ReapAfter time.Duration `yaml:"reap_after"`
	// DataDir holds the node's raft state. Setting it makes the cluster
	// config replicated with raft instead of read from ClusterConfig, which
	// then only seeds a new cluster (default "": no raft).
	DataDir string `yaml:"data_dir"`
	// RaftAddr gives raft a TCP port of its own, "host:port", as before
	// issue 13 (default none: raft shares ClusterAddr).
	RaftAddr string `yaml:"raft_addr"`
	// RaftAdvertiseAddr is the raft "host:port" the others dial; only with
	// RaftAddr (default: from RaftAddr, as for every port).
	RaftAdvertiseAddr string `yaml:"raft_advertise_addr"`
	// BootstrapExpect is how many servers form a new cluster together
	// (default 1 without join: a single-node cluster at once; 0 with join:
	// wait to be added by the existing cluster).
	BootstrapExpect int `yaml:"bootstrap_expect"`
	// ClusterTLS enables mutual TLS on the raft and cluster RPC ports: every
	// node presents Cert/Key and accepts only peers whose certificate chains
	// to CA (default none: plaintext, for trusted networks).
	ClusterTLS *ClusterTLS `yaml:"cluster_tls"`
	// Tracing exports OpenTelemetry traces (default: off, unless the
	// OTEL_* variables turn it on; see Tracing).
	Tracing Tracing `yaml:"tracing"`
	// UpgradeSocket is the Unix socket a successor process ("run
	// --upgrade", or SIGUSR2) takes the listeners over from (default
	// pingora-node-<name>.sock in the system's temporary directory).
	UpgradeSocket string `yaml:"upgrade_socket"`

	dir string // the node file's directory, for relative paths
}

// Listener is one proxy listener.
type Listener struct {
	// Name labels the listener (required, unique).
	Name string `yaml:"name"`
	// Addr is host:port to listen on (required, unique).
	Addr string `yaml:"addr"`
	// TLS terminates TLS on the listener (default: cleartext).
	TLS *ListenerTLS `yaml:"tls"`
	// H2C accepts HTTP/2 with prior knowledge beside HTTP/1.1 on a
	// cleartext listener (default false).
	H2C bool `yaml:"h2c"`
	// DisableH2 stops offering h2 by ALPN on a TLS listener (default false).
	DisableH2 bool `yaml:"disable_h2"`
	// TrustedProxies lists the networks (CIDR, or one address) of the
	// load balancers and proxies in front of this listener, whose
	// X-Forwarded-*, Forwarded and X-Real-IP fields are believed and
	// appended to; any other client's are removed, and the upstream gets
	// X-Forwarded-For, -Proto and -Host as this node saw the connection
	// (default none: no client is trusted).
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// ListenerTLS names the certificates of a TLS listener: Cert/Key, and any
// number of Certs, chosen by SNI; the first is the default.
type ListenerTLS struct {
	Cert  string     `yaml:"cert"`
	Key   string     `yaml:"key"`
	Certs []CertPair `yaml:"certs"`
}

// ClusterTLS names the files of node-to-node mutual TLS.
type ClusterTLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// CertPair is a PEM certificate chain and its key.
type CertPair struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Pairs returns every certificate pair, Cert/Key first, paths resolved.
func (t *ListenerTLS) Pairs(n *Node) []CertPair {
	var out []CertPair
	if t.Cert != "" || t.Key != "" {
		out = append(out, CertPair{Cert: n.Path(t.Cert), Key: n.Path(t.Key)})
	}
	for _, p := range t.Certs {
		out = append(out, CertPair{Cert: n.Path(p.Cert), Key: n.Path(p.Key)})
	}
	return out
}

// Downstream bounds client connections (zero: engine default).
type Downstream struct {
	HeaderTimeout    time.Duration `yaml:"header_timeout"`
	KeepAliveTimeout time.Duration `yaml:"keepalive_timeout"`
	ReadIdleTimeout  time.Duration `yaml:"read_idle_timeout"`
	WriteIdleTimeout time.Duration `yaml:"write_idle_timeout"`
	// TunnelIdleTimeout closes an upgraded (WebSocket) tunnel in which no
	// byte moved either way for this long (engine default 1h).
	TunnelIdleTimeout time.Duration `yaml:"tunnel_idle_timeout"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	MaxConns          int           `yaml:"max_conns"`
	// MaxConnsPerIP caps the client connections open from one address
	// (an IPv6 one's /64), the TCP peer's, not X-Forwarded-For's: one
	// more is reset as it is accepted (default 0: no cap; leave it off
	// behind a load balancer or NAT, or list the balancers in the
	// listener's trusted_proxies, which are not counted).
	MaxConnsPerIP int   `yaml:"max_conns_per_ip"`
	MaxBodyBytes  int64 `yaml:"max_body_bytes"`
	// MinSendRate and MinRecvRate are the least a client must take of a
	// response and send of a request body, in bytes a second, counted
	// only while the proxy waits on it, after MinRateGrace: below, its
	// HTTP/1.1 connection closes or its HTTP/2 stream is reset. Unset:
	// the engine default (240); 0 turns a minimum off, the one downstream
	// field whose zero is not the default.
	MinSendRate  *int          `yaml:"min_send_rate"`
	MinRecvRate  *int          `yaml:"min_recv_rate"`
	MinRateGrace time.Duration `yaml:"min_rate_grace"`
}

func derefInt(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// DefaultAdminAddr is the admin address when the node file names none.
const DefaultAdminAddr = "127.0.0.1:9090"

// DefaultCacheMemoryBytes is the HTTP cache's memory cap when the node
// sets none.
const DefaultCacheMemoryBytes = 256 << 20

// ParseNode parses and validates a node file with no other source: file
// names it in errors and anchors relative paths; an unset name is the host
// name.
func ParseNode(file string, data []byte) (*Node, error) {
	var n Node
	root, err := decode(file, data, &n)
	if err != nil {
		return nil, err
	}
	if err := wholeNumbers(file, root, &n); err != nil {
		return nil, err
	}
	n.dir = filepath.Dir(file)
	return n.finish(file, root, map[string]string{}, os.Hostname)
}

// LoadNode reads and parses the node file at path.
func LoadNode(path string) (*Node, error) {
	return Load(Sources{File: path})
}

// finish fills the defaults and validates once; from maps the fields set
// by the environment or flags to their source, named in errors instead of
// a file line.
func (n *Node) finish(file string, root *yaml.Node, from map[string]string, hostname func() (string, error)) (*Node, error) {
	if n.Name == "" && hostname != nil {
		if h, err := hostname(); err == nil {
			n.Name = h
			from["name"] = "default (the host name)"
		}
	}
	n.applyDefaults()
	var e errs
	n.validate(&e)
	if err := e.resultFrom(file, root, from); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *Node) applyDefaults() {
	if n.AdminAddr == "" {
		n.AdminAddr = DefaultAdminAddr
	}
	if n.LogLevel == "" {
		n.LogLevel = "info"
	}
	if n.GracePeriod == 0 {
		n.GracePeriod = 30 * time.Second
	}
	if n.ClusterName == "" {
		n.ClusterName = "pingora"
	}
	if n.GossipProfile == "" {
		n.GossipProfile = "lan"
	}
	if n.RingWeight == 0 {
		n.RingWeight = 1
	}
	// A token from a file or a secret made with echo ends in a newline:
	// taken as is, no client could ever send it (a header cannot carry
	// one) and every admin write would be refused until a restart.
	n.AdminToken = strings.TrimSpace(n.AdminToken)
	if n.CacheMemoryBytes == 0 {
		n.CacheMemoryBytes = DefaultCacheMemoryBytes
	}
	bind := n.BindAddr
	if _, err := netip.ParseAddr(bind); bind != "" && err != nil {
		// Not an IP ("eth0"): validation says so under bind_addr. Derived
		// from it, gossip_addr and cluster_addr were refused too, at line
		// 1 of a file that set neither.
		bind = "0.0.0.0"
	}
	if bind == "" {
		switch {
		case n.GossipAddr != "":
			bind, _ = splitAdvertise(n.GossipAddr) // "" (every address) stays ""
		case len(n.Join) > 0:
			bind = "0.0.0.0"
		default:
			bind = "127.0.0.1"
		}
	}
	if len(n.Join) > 0 && n.GossipAddr == "" {
		n.GossipAddr = net.JoinHostPort(bind, "7946")
	}
	if (n.Clustered() || n.Replicated()) && n.ClusterAddr == "" {
		n.ClusterAddr = net.JoinHostPort(bind, "7947")
	}
}

// RaftShared reports whether raft shares the cluster port: RaftAddr is
// unset, or the same address as ClusterAddr (not port 0, which picks two).
func (n *Node) RaftShared() bool {
	_, port, _ := net.SplitHostPort(n.RaftAddr)
	return n.RaftAddr == "" || n.RaftAddr == n.ClusterAddr && port != "0"
}

// Bootstrap returns how many servers bootstrap a new raft cluster: the
// configured number, else 1 for a node that joins nobody (a single-node
// cluster at once) and 0 for a joiner (it waits to be added).
func (n *Node) Bootstrap() int {
	if n.BootstrapExpect > 0 {
		return n.BootstrapExpect
	}
	if len(n.Join) == 0 {
		return 1
	}
	return 0
}

// Replicated reports whether the cluster config comes from raft.
func (n *Node) Replicated() bool { return n.DataDir != "" }

// Clustered reports whether the node gossips with others.
func (n *Node) Clustered() bool { return n.GossipAddr != "" }

// GossipKeyBytes decodes GossipKey.
func (n *Node) GossipKeyBytes() ([]byte, error) {
	if n.GossipKey == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(n.GossipKey)
	if err != nil {
		return nil, fmt.Errorf("not base64: %v", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("%d bytes; want 16, 24 or 32", len(k))
}

// UpgradeSocketPath returns the hand-off socket's path.
func (n *Node) UpgradeSocketPath() string {
	if n.UpgradeSocket != "" {
		return n.Path(n.UpgradeSocket)
	}
	return filepath.Join(os.TempDir(), "pingora-node-"+n.Name+".sock")
}

// Validate checks n, for a Node built in code rather than loaded.
func (n *Node) Validate() error {
	var e errs
	n.validate(&e)
	return e.result("", nil)
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func (n *Node) validate(e *errs) {
	if !namePattern.MatchString(n.Name) {
		e.add("name", "%q is not a valid node name (1-64 letters, digits, '.', '_' or '-')", n.Name)
	}
	if err := checkHostPort(n.AdminAddr); err != nil {
		e.add("admin_addr", "%v", err)
	}
	if n.ClusterConfig == "" && n.DataDir == "" {
		e.add("cluster_config", "required without data_dir: the path of the cluster config file")
	}
	switch n.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		e.add("log_level", "%q is not one of debug, info, warn, error", n.LogLevel)
	}
	if n.GracePeriod < 0 {
		e.add("grace_period", "cannot be negative")
	}
	n.validateListeners(e)
	n.validateCluster(e)
	n.validateTracing(e)
	d := n.Downstream
	for _, f := range []struct {
		name string
		v    int64
	}{{"header_timeout", int64(d.HeaderTimeout)}, {"keepalive_timeout", int64(d.KeepAliveTimeout)},
		{"read_idle_timeout", int64(d.ReadIdleTimeout)}, {"write_idle_timeout", int64(d.WriteIdleTimeout)},
		{"tunnel_idle_timeout", int64(d.TunnelIdleTimeout)}, {"min_rate_grace", int64(d.MinRateGrace)},
		{"min_send_rate", int64(derefInt(d.MinSendRate))}, {"min_recv_rate", int64(derefInt(d.MinRecvRate))},
		{"max_header_bytes", int64(d.MaxHeaderBytes)}, {"max_conns", int64(d.MaxConns)}, {"max_conns_per_ip", int64(d.MaxConnsPerIP)},
		{"max_body_bytes", d.MaxBodyBytes}} {
		if f.v < 0 {
			e.add("downstream."+f.name, "cannot be negative")
		}
	}
	if d.MaxHeaderBytes > 1<<20 {
		e.add("downstream.max_header_bytes", "%d is over the 1 MiB maximum", d.MaxHeaderBytes)
	}
	if n.CacheMemoryBytes != 0 && (n.CacheMemoryBytes < 1<<20 || n.CacheMemoryBytes > 1<<40) {
		e.add("cache_memory_bytes", "%d is not between 1 MiB (1048576) and 1 TiB", n.CacheMemoryBytes)
	}
}

func (n *Node) validateCluster(e *errs) {
	for i, j := range n.Join {
		if err := checkSeed(j); err != nil {
			e.add("join["+strconv.Itoa(i)+"]", "%v", err)
		}
	}
	for _, f := range []struct{ name, v string }{{"gossip_addr", n.GossipAddr}, {"cluster_addr", n.ClusterAddr}} {
		if f.v != "" {
			if err := checkHostPort(f.v); err != nil {
				e.add(f.name, "%v", err)
			}
		}
	}
	if _, err := n.GossipKeyBytes(); err != nil {
		e.add("gossip_key", "%v", err)
	}
	switch n.GossipProfile {
	case "", "lan", "fast":
	default:
		e.add("gossip_profile", "%q is not one of lan, fast", n.GossipProfile)
	}
	n.validateAdvertise(e)
	n.checkReachable(e)
	if n.ReapAfter < 0 {
		e.add("reap_after", "cannot be negative")
	}
	if t := n.ClusterTLS; t != nil && (t.CA == "" || t.Cert == "" || t.Key == "") {
		e.add("cluster_tls", "ca, cert and key are all required")
	}
	if n.RaftAddr != "" {
		if err := checkHostPort(n.RaftAddr); err != nil {
			e.add("raft_addr", "%v", err)
		}
	}
	if n.RaftAdvertiseAddr != "" && n.RaftShared() {
		e.add("raft_advertise_addr", "raft shares the cluster port (raft_addr is unset), which is advertised at cluster_advertise_addr: set that instead, or set raft_addr to give raft a port of its own")
	}
	if n.DataDir != "" && n.AdminToken == "" && !loopbackAddr(n.AdminAddr) {
		e.add("admin_token", "required when admin_addr %q is reachable beyond loopback and the config is replicated (data_dir): config writes need a bearer token", n.AdminAddr)
	}
	if strings.IndexFunc(n.AdminToken, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		e.add("admin_token", "holds a space, a control character or a non-ASCII byte: it is sent in an HTTP header, use visible ASCII")
	}
	if n.BootstrapExpect < 0 || n.BootstrapExpect > 7 {
		e.add("bootstrap_expect", "%d is not between 0 and 7", n.BootstrapExpect)
	}
	if n.RingWeight < 0 || n.RingWeight > 100 {
		e.add("ring_weight", "%d is not between 1 and 100", n.RingWeight)
	}
}

func (n *Node) validateListeners(e *errs) {
	if len(n.Listeners) == 0 {
		e.add("listeners", "at least one listener is required")
	}
	names, addrs := map[string]int{}, map[string]int{}
	for i, l := range n.Listeners {
		p := "listeners[" + strconv.Itoa(i) + "]"
		if l.Name == "" {
			e.add(p+".name", "required")
		} else if j, dup := names[l.Name]; dup {
			e.add(p+".name", "%q is also the name of listeners[%d]", l.Name, j)
		}
		names[l.Name] = i
		if err := checkHostPort(l.Addr); err != nil {
			e.add(p+".addr", "%v", err)
		} else if j, dup := addrs[l.Addr]; dup {
			e.add(p+".addr", "%q is also the address of listeners[%d]", l.Addr, j)
		}
		addrs[l.Addr] = i
		for j, tp := range l.TrustedProxies {
			if _, err := ParseTrustedProxy(tp); err != nil {
				e.add(p+".trusted_proxies["+strconv.Itoa(j)+"]", "%v", err)
			}
		}
		if l.TLS != nil {
			if l.H2C {
				e.add(p+".h2c", "h2c is for cleartext listeners; TLS listeners offer h2 by ALPN")
			}
			validateTLS(e, p+".tls", l.TLS)
		}
	}
}

func validateTLS(e *errs, p string, t *ListenerTLS) {
	if (t.Cert == "") != (t.Key == "") {
		e.add(p, "cert and key go together")
	}
	if t.Cert == "" && len(t.Certs) == 0 {
		e.add(p, "needs a certificate: cert and key, or certs")
	}
	for i, c := range t.Certs {
		if c.Cert == "" || c.Key == "" {
			e.add(fmt.Sprintf("%s.certs[%d]", p, i), "cert and key are both required")
		}
	}
}

// Path resolves p against the node file's directory.
func (n *Node) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || n.dir == "" {
		return p
	}
	return filepath.Join(n.dir, p)
}

// checkHostPort accepts "host:port" with a numeric port; host may be empty
// (all addresses), an IP or a name.
func checkHostPort(a string) error {
	if a == "" {
		return fmt.Errorf("required (host:port)")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		if _, perr := strconv.Atoi(a); perr == nil {
			// net says "missing port in address" of "8080".
			return fmt.Errorf("%q is a port alone: write \":%s\" (every address) or \"HOST:%s\"", a, a, a)
		}
		return fmt.Errorf("%q: %v", a, stripAddrErr(err))
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", a, port)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return fmt.Errorf("%q: %q is not an IP address or host name", a, host)
	}
	return nil
}

// checkSeed checks a join address: a gossip port to dial, so a host and a
// port from 1 to 65535 (a seed with a port out of range, or none, used to
// pass here and fail every join attempt for ever, the node running alone).
func checkSeed(a string) error {
	if _, err := strconv.Atoi(a); err == nil {
		return fmt.Errorf("%q is a port alone: a seed is another node's gossip address, \"HOST:%s\"", a, a)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil && (net.ParseIP(strings.Trim(a, "[]")) != nil || validHostname(a)) {
		// A node's address without its port: net says only "missing port
		// in address". The port is not assumed, as the seed's node may
		// gossip on another one; the default is named.
		h := a
		if ip := net.ParseIP(strings.Trim(a, "[]")); ip != nil {
			h = ip.String()
		}
		return fmt.Errorf("%q has no port: a seed is another node's gossip address, host:port (%s with the default gossip port)", a, net.JoinHostPort(h, "7946"))
	}
	if err == nil {
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%q: port %q is not a number from 1 to 65535", a, port)
		}
		if host == "" {
			return fmt.Errorf("%q: no host (a seed is another node's gossip_addr, host:port)", a)
		}
		if net.ParseIP(host) == nil && strings.Trim(host, "0123456789.") == "" {
			// 10.0.0.300 is a mistyped address, not a host name: no
			// top-level domain is all digits (RFC 3696 §2).
			return fmt.Errorf("%q: %q is not an IP address", a, host)
		}
	}
	return checkHostPort(a)
}

func stripAddrErr(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}

var hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.?$`)

func validHostname(h string) bool { return len(h) <= 253 && hostnamePattern.MatchString(h) }

// ValidHostname reports whether h is a DNS host name (labels of letters,
// digits and '-', at most 253 bytes), as an address setting takes it.
func ValidHostname(h string) bool { return validHostname(h) }

func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
