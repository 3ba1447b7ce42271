package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A node's settings come from three layers, each overriding the one
// before: the node file (optional), PINGORA_* environment variables, then
// command-line flags. Defaults fill what none set, and the result is
// validated once: an invalid value is reported with the layer that set it
// ("node.yaml:3: ...", "PINGORA_NAME: ...", "flag --name: ...").

// Setting is a node-file field that an environment variable and a
// command-line flag can set too.
type Setting struct {
	// Key is the node-file field, as error paths name it.
	Key string
	// Flag is the flag's name without dashes ("" for none).
	Flag string
	// Env is the environment variable ("" for none).
	Env string
	// Usage is the flag's help text; a `quoted` word names its argument.
	Usage string

	set func(n *Node, value string, first bool) error // first: the first value of its layer
}

// Settings lists what the environment and flags can set. A list field set
// by a layer replaces the list of the layers below; repeating its flag
// appends.
var Settings = []Setting{
	{"name", "name", "PINGORA_NAME", "node `name` (default: the host name)", setString(func(n *Node) *string { return &n.Name })},
	{"listeners", "listen", "PINGORA_LISTEN", "proxy listener `host:port` (HTTP/1.1 and h2c); repeat for more; replaces the file's listeners", setListen},
	{"cluster_config", "cluster-config", "PINGORA_CLUSTER_CONFIG", "cluster config file `path` (required without a data dir)", setPath(func(n *Node) *string { return &n.ClusterConfig })},
	{"admin_addr", "admin-addr", "PINGORA_ADMIN_ADDR", "admin server `host:port` (default 127.0.0.1:9090)", setString(func(n *Node) *string { return &n.AdminAddr })},
	{"admin_advertise_addr", "admin-advertise-addr", "PINGORA_ADMIN_ADVERTISE_ADDR", "admin `host:port` advertised to the other nodes, for members and the cluster page (default: from admin-addr; loopback is not advertised)", setString(func(n *Node) *string { return &n.AdminAdvertiseAddr })},
	{"admin_token", "", "PINGORA_ADMIN_TOKEN", "", setString(func(n *Node) *string { return &n.AdminToken })},
	{"log_level", "log-level", "PINGORA_LOG_LEVEL", "log `level`: debug, info, warn or error (default info)", setString(func(n *Node) *string { return &n.LogLevel })},
	{"join", "join", "PINGORA_JOIN", "comma-separated gossip `host:port` seeds to join", setList(func(n *Node) *[]string { return &n.Join })},
	{"bind_addr", "bind-addr", "PINGORA_BIND_ADDR", "`IP` the cluster ports bind to by default (default: the gossip IP, else 0.0.0.0 with --join)", setString(func(n *Node) *string { return &n.BindAddr })},
	{"advertise_addr", "advertise-addr", "PINGORA_ADVERTISE_ADDR", "`IP` (or gossip ip:port) other nodes reach this one at (default: the bound IP, or the private IP)", setString(func(n *Node) *string { return &n.AdvertiseAddr })},
	{"gossip_addr", "gossip-addr", "PINGORA_GOSSIP_ADDR", "gossip `ip:port`, TCP and UDP (default bind-addr:7946 with --join)", setString(func(n *Node) *string { return &n.GossipAddr })},
	{"gossip_key", "", "PINGORA_GOSSIP_KEY", "", setString(func(n *Node) *string { return &n.GossipKey })},
	{"gossip_profile", "gossip-profile", "PINGORA_GOSSIP_PROFILE", "gossip timing `profile`: lan or fast (default lan)", setString(func(n *Node) *string { return &n.GossipProfile })},
	{"cluster_name", "cluster-name", "PINGORA_CLUSTER_NAME", "cluster `name`: nodes of another cluster cannot join (default pingora)", setString(func(n *Node) *string { return &n.ClusterName })},
	{"cluster_addr", "cluster-addr", "PINGORA_CLUSTER_ADDR", "cluster port `host:port`: node-to-node RPC and raft (default bind-addr:7947 with gossip or data-dir)", setString(func(n *Node) *string { return &n.ClusterAddr })},
	{"cluster_advertise_addr", "cluster-advertise-addr", "PINGORA_CLUSTER_ADVERTISE_ADDR", "cluster RPC `host:port` other nodes dial", setString(func(n *Node) *string { return &n.ClusterAdvertiseAddr })},
	{"data_dir", "data-dir", "PINGORA_DATA_DIR", "raft data `dir`: replicate the cluster config", setPath(func(n *Node) *string { return &n.DataDir })},
	{"raft_addr", "raft-addr", "PINGORA_RAFT_ADDR", "give raft a port of its own, `host:port` (default: raft shares cluster-addr)", setString(func(n *Node) *string { return &n.RaftAddr })},
	{"raft_advertise_addr", "raft-advertise-addr", "PINGORA_RAFT_ADVERTISE_ADDR", "raft `host:port` other nodes dial (with raft-addr)", setString(func(n *Node) *string { return &n.RaftAdvertiseAddr })},
	{"bootstrap_expect", "bootstrap-expect", "PINGORA_BOOTSTRAP_EXPECT", "`N` servers that form a new raft cluster together, 0-7", setInt(func(n *Node) *int { return &n.BootstrapExpect })},
	{"zone", "zone", "PINGORA_ZONE", "failure domain `name`, gossiped", setString(func(n *Node) *string { return &n.Zone })},
	{"upgrade_socket", "upgrade-socket", "PINGORA_UPGRADE_SOCKET", "hand-off Unix socket `path`", setPath(func(n *Node) *string { return &n.UpgradeSocket })},
	{"tracing.endpoint", "tracing-endpoint", "PINGORA_TRACING_ENDPOINT", "OTLP/HTTP trace collector `URL`, such as http://127.0.0.1:4318: turns tracing on (default: OTEL_EXPORTER_OTLP_ENDPOINT)", setString(func(n *Node) *string { return &n.Tracing.Endpoint })},
	{"tracing.sample_ratio", "tracing-sample-ratio", "PINGORA_TRACING_SAMPLE_RATIO", "share of new traces recorded, `0-1` (default 0.01)", setRatio(func(n *Node) **float64 { return &n.Tracing.SampleRatio })},
	{"cache_memory_bytes", "cache-memory-bytes", "PINGORA_CACHE_MEMORY_BYTES", "HTTP cache memory cap in `bytes` (default 268435456, 256 MiB)", setInt64(func(n *Node) *int64 { return &n.CacheMemoryBytes })},
}

// Override is one value from outside the node file.
type Override struct {
	// Key is the Setting.Key it sets.
	Key   string
	Value string
	// Source names it in errors, like "flag --name".
	Source string
}

// Sources are the layers a node's settings come from.
type Sources struct {
	// File is the node file's path ("" for none: flags and environment only).
	File string
	// Env looks environment variables up (nil: none).
	Env func(string) string
	// Flags are the values given on the command line, in order.
	Flags []Override
	// Hostname gives the default node name (nil: os.Hostname).
	Hostname func() (string, error)
}

// Load builds a node's settings from the node file, then the environment,
// then the flags, fills the defaults and validates the result once.
func Load(s Sources) (*Node, error) {
	var n Node
	var root *yaml.Node
	if s.File != "" {
		data, err := os.ReadFile(s.File)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if root, err = decode(s.File, data, &n); err != nil {
			return nil, err
		}
		if err := wholeNumbers(s.File, root, &n); err != nil {
			return nil, err
		}
		n.dir = filepath.Dir(s.File)
	}
	var env []Override
	if s.Env != nil {
		for _, st := range Settings {
			if st.Env == "" {
				continue
			}
			if v := s.Env(st.Env); v != "" {
				env = append(env, Override{Key: st.Key, Value: v, Source: st.Env})
			}
		}
	}
	from := map[string]string{}
	var e errs
	for _, layer := range [][]Override{env, s.Flags} {
		n.apply(layer, from, &e)
	}
	if len(e.list) > 0 {
		return nil, e.resultFrom(s.File, root, from)
	}
	if s.Hostname == nil {
		s.Hostname = os.Hostname
	}
	return n.finish(s.File, root, from, s.Hostname)
}

// apply sets one layer's values, recording their source in from.
func (n *Node) apply(layer []Override, from map[string]string, e *errs) {
	seen := map[string]bool{}
	for _, o := range layer {
		st, ok := settingFor(o.Key)
		if !ok {
			e.add(o.Key, "not a setting")
			continue
		}
		from[o.Key] = o.Source
		if err := st.set(n, o.Value, !seen[o.Key]); err != nil {
			e.add(o.Key, "%v", err)
		}
		seen[o.Key] = true
	}
}

func settingFor(key string) (Setting, bool) {
	for _, st := range Settings {
		if st.Key == key {
			return st, true
		}
	}
	return Setting{}, false
}

func setString(field func(*Node) *string) func(*Node, string, bool) error {
	return func(n *Node, v string, _ bool) error {
		*field(n) = v
		return nil
	}
}

// setPath makes a relative path absolute against the working directory:
// flags and the environment are not relative to the node file.
func setPath(field func(*Node) *string) func(*Node, string, bool) error {
	return func(n *Node, v string, _ bool) error {
		abs, err := filepath.Abs(v)
		if err != nil {
			return err
		}
		*field(n) = abs
		return nil
	}
}

func setInt(field func(*Node) *int) func(*Node, string, bool) error {
	return func(n *Node, v string, _ bool) error {
		i, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*field(n) = i
		return nil
	}
}

func setInt64(field func(*Node) *int64) func(*Node, string, bool) error {
	return func(n *Node, v string, _ bool) error {
		i, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*field(n) = i
		return nil
	}
}

func setList(field func(*Node) *[]string) func(*Node, string, bool) error {
	return func(n *Node, v string, first bool) error {
		if first {
			*field(n) = nil
		}
		*field(n) = append(*field(n), splitList(v)...)
		return nil
	}
}

// setListen adds plain listeners named listen-1, listen-2, ... that serve
// HTTP/1.1 and h2c.
func setListen(n *Node, v string, first bool) error {
	if first {
		n.Listeners = nil
	}
	for _, a := range splitList(v) {
		n.Listeners = append(n.Listeners, Listener{Name: "listen-" + strconv.Itoa(len(n.Listeners)+1), Addr: a, H2C: true})
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
