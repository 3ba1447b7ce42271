package membership

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/pingora-go/pingora-go/clock"
)

// Profile names a set of memberlist timings.
type Profile string

const (
	// ProfileLAN is memberlist.DefaultLANConfig: 1s probes, about 6s failure
	// detection (measured 6s with five nodes). Use it in production.
	ProfileLAN Profile = "lan"
	// ProfileFast probes every 200ms and suspects for under 1.5s: failure
	// detection in about 1s on loopback. For tests and the demo only: it costs
	// bandwidth and false suspicions on a busy or lossy network.
	ProfileFast Profile = "fast"
)

// Config configures a Cluster. Zero fields take their defaults.
type Config struct {
	// Name is this node's unique name in the cluster, 1-64 letters, digits,
	// '.', '_' or '-'; members gossiping other names are ignored (required;
	// no default).
	Name string
	// BindAddr is the gossip "host:port" for TCP and UDP; port 0 picks a
	// free port, reported by Cluster.Addr (default "0.0.0.0:7946").
	BindAddr string
	// AdvertiseAddr is the "ip:port" other nodes reach this node at; port 0
	// means the bound port (default: BindAddr, or memberlist's choice of a
	// private address when bound to 0.0.0.0).
	AdvertiseAddr string
	// Join lists seed "host:port" addresses; DNS names are resolved again on
	// every try (default none: start a new cluster and wait to be joined).
	Join []string
	// SecretKey enables gossip encryption (AES-GCM) with a 16, 24 or 32 byte
	// key shared by all nodes (default none: plaintext gossip).
	SecretKey []byte
	// Label is the cluster name; nodes with another label cannot talk to us
	// (default "", accepted only by unlabelled nodes).
	Label string
	// Profile picks memberlist timings: ProfileLAN or ProfileFast (default "lan").
	Profile Profile
	// Meta is the initial node metadata; Meta.Name is set from Name
	// (default: state starting, weight 1).
	Meta Meta
	// MetaPushInterval is the minimum gap between metadata broadcasts;
	// changes in between are coalesced (default 200ms).
	MetaPushInterval time.Duration
	// MetaAckTimeout is how long a live peer may take to acknowledge a
	// metadata broadcast before it is asked, then sent the metadata
	// directly (default 500ms for lan, 300ms for fast).
	MetaAckTimeout time.Duration
	// MetaSyncInterval is how often acknowledgements are checked, and the
	// first retry delay for a lagging peer, doubling up to 30s (default
	// 250ms for lan, 100ms for fast).
	MetaSyncInterval time.Duration
	// ReapAfter is how long a failed or departed member stays in the member
	// list (Members, /status, "members") before it is forgotten, as Consul's
	// reconnect_timeout (72h there) (default 24h).
	ReapAfter time.Duration
	// JoinBackoffMax caps the retry delay while no seed answers (default 30s
	// for lan, 2s for fast).
	JoinBackoffMax time.Duration
	// RejoinInterval is how often seeds missing from the member list are
	// re-joined so that healed partitions merge (default 30s for lan, 1s for fast).
	RejoinInterval time.Duration
	// Logger receives membership and memberlist logs (default slog.Default()).
	Logger *slog.Logger
	// Clock drives join retries and metadata pushes (default clock.Real{}).
	Clock clock.Clock
	// WrapTransport, if set, wraps the gossip transport, for fault injection
	// in tests (default none).
	WrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// maxWeight bounds a ring weight: each unit is 160 ring points.
const maxWeight = 100

// Validate reports the first invalid field. It does not touch the network.
func (c Config) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("membership: Name is required")
	}
	if err := checkName(c.Name); err != nil {
		return fmt.Errorf("membership: Name: %w", err)
	}
	if c.BindAddr != "" {
		if _, _, err := splitHostPort(c.BindAddr); err != nil {
			return fmt.Errorf("membership: BindAddr (%q): %w", c.BindAddr, err)
		}
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitHostPort(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("membership: AdvertiseAddr (%q): %w", c.AdvertiseAddr, err)
		}
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("membership: SecretKey is %d bytes, want 16, 24 or 32", len(c.SecretKey))
	}
	if len(c.Label) > memberlist.LabelMaxSize {
		return fmt.Errorf("membership: Label (%d bytes) cannot be longer than %d", len(c.Label), memberlist.LabelMaxSize)
	}
	switch c.Profile {
	case "", ProfileLAN, ProfileFast:
	default:
		return fmt.Errorf("membership: Profile (%q) must be %q or %q", c.Profile, ProfileLAN, ProfileFast)
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"MetaPushInterval", c.MetaPushInterval}, {"JoinBackoffMax", c.JoinBackoffMax}, {"RejoinInterval", c.RejoinInterval},
		{"MetaAckTimeout", c.MetaAckTimeout}, {"MetaSyncInterval", c.MetaSyncInterval}, {"ReapAfter", c.ReapAfter},
	} {
		if f.d < 0 {
			return fmt.Errorf("membership: %s (%s) cannot be negative", f.name, f.d)
		}
	}
	if c.MetaSyncInterval != 0 && c.MetaSyncInterval < 10*time.Millisecond {
		return fmt.Errorf("membership: MetaSyncInterval (%s) cannot be under 10ms", c.MetaSyncInterval)
	}
	if c.Meta.Weight < 0 || c.Meta.Weight > maxWeight {
		return fmt.Errorf("membership: Meta.Weight (%d) must be between 0 and %d", c.Meta.Weight, maxWeight)
	}
	m := c.Meta
	m.Name = c.Name
	if _, err := encodeMeta(m.withDefaults()); err != nil {
		return err
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = "0.0.0.0:7946"
	}
	if c.Profile == "" {
		c.Profile = ProfileLAN
	}
	if c.MetaPushInterval == 0 {
		c.MetaPushInterval = 200 * time.Millisecond
	}
	fast := c.Profile == ProfileFast
	if c.JoinBackoffMax == 0 {
		c.JoinBackoffMax = pick(fast, 2*time.Second, 30*time.Second)
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = pick(fast, time.Second, 30*time.Second)
	}
	if c.MetaAckTimeout == 0 {
		c.MetaAckTimeout = pick(fast, 300*time.Millisecond, 500*time.Millisecond)
	}
	if c.MetaSyncInterval == 0 {
		c.MetaSyncInterval = pick(fast, 100*time.Millisecond, 250*time.Millisecond)
	}
	if c.ReapAfter == 0 {
		c.ReapAfter = 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	c.Meta.Name = c.Name
	c.Meta = c.Meta.withDefaults()
	return c
}

func pick[T any](cond bool, a, b T) T {
	if cond {
		return a
	}
	return b
}

// memberlistConfig turns c (with defaults) into a memberlist config, minus
// transport, delegates and logger.
func (c Config) memberlistConfig() (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	if c.Profile == ProfileFast {
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.SuspicionMult = 3
		mc.SuspicionMaxTimeoutMult = 2
		mc.GossipInterval = 50 * time.Millisecond
		mc.GossipToTheDeadTime = 2 * time.Second
		mc.PushPullInterval = 2 * time.Second
		mc.TCPTimeout = time.Second
		mc.DeadNodeReclaimTime = 500 * time.Millisecond
	} else {
		// A node restarted with a new address (a rescheduled pod) may take
		// its name back 10s after it was declared dead; memberlist's default
		// never allows it.
		mc.DeadNodeReclaimTime = 10 * time.Second
	}
	mc.Name = c.Name
	mc.Label = c.Label
	host, port, err := splitHostPort(c.BindAddr)
	if err != nil {
		return nil, err
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = "", port
	if c.AdvertiseAddr != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort(c.AdvertiseAddr); err != nil {
			return nil, err
		}
	}
	if len(c.SecretKey) > 0 {
		kr, err := memberlist.NewKeyring(nil, c.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("membership: SecretKey: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	return mc, nil
}

func splitHostPort(hp string) (string, int, error) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	return host, port, nil
}
