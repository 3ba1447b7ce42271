package docker

import (
	"bytes"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pingora-go/pingora-go/deploy/internal/nodeflags"
	"github.com/pingora-go/pingora-go/node/config"
)

// composeFile is the part of the compose format docker-compose.yml uses;
// decoding is strict, so a key outside it (a typo, or a feature this test
// does not check) fails.
type composeFile struct {
	Version  string                    `yaml:"version"`
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct{}       `yaml:"networks"`
}

type composeService struct {
	Image           string   `yaml:"image"`
	Scale           int      `yaml:"scale"`
	Command         []string `yaml:"command"`
	EnvFile         string   `yaml:"env_file"`
	Volumes         []string `yaml:"volumes"`
	Ports           []string `yaml:"ports"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
	Networks        []string `yaml:"networks"`
	DependsOn       []string `yaml:"depends_on"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f composeFile
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// TestComposeNode checks the node service: the binary accepts its command
// (with the token up.sh writes), it joins the service's own DNS name on the
// gossip port, the admin API is on 9090 and beyond loopback, it expects as
// many servers as the file starts, the seed config is the mounted
// cluster.yaml and validates, ports are published on 127.0.0.1 only, and
// docker waits for the node's drain.
func TestComposeNode(t *testing.T) {
	f := loadCompose(t)
	s, ok := f.Services["node"]
	if !ok {
		t.Fatal("no service named node")
	}
	if s.EnvFile != "admin.env" {
		t.Errorf("env_file %q: up.sh writes the admin token to admin.env", s.EnvFile)
	}
	n, err := nodeflags.Load(s.Command, map[string]string{"PINGORA_ADMIN_TOKEN": "from-admin-env"}, "0123456789ab")
	if err != nil {
		t.Fatalf("the binary would refuse the node's command: %v", err)
	}
	if len(n.Join) != 1 || n.Join[0] != net.JoinHostPort("node", "7946") || !strings.HasSuffix(n.GossipAddr, ":7946") {
		t.Errorf("join %q, gossip %s: want the service's DNS name node:7946", n.Join, n.GossipAddr)
	}
	if n.AdminAddr != "0.0.0.0:9090" || n.AdminToken == "" {
		t.Errorf("admin %s: want 0.0.0.0:9090 with a token (followers forward writes)", n.AdminAddr)
	}
	if n.BootstrapExpect != s.Scale || s.Scale%2 == 0 {
		t.Errorf("bootstrap_expect %d, scale %d: want the same odd number", n.BootstrapExpect, s.Scale)
	}
	if n.DataDir != "/data" {
		t.Errorf("data_dir %s: the image makes /data writable for its user", n.DataDir)
	}
	seed := "./cluster.yaml:" + n.ClusterConfig + ":ro"
	if len(s.Volumes) != 1 || s.Volumes[0] != seed {
		t.Errorf("volumes %q: want %s only", s.Volumes, seed)
	}
	doc, err := os.ReadFile("cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.ParseCluster("cluster.yaml", doc); err != nil {
		t.Errorf("seed: %v", err)
	}
	for _, p := range s.Ports {
		if !strings.HasPrefix(p, "127.0.0.1::") {
			t.Errorf("port %q: publish on 127.0.0.1 only, on a port docker picks (several nodes)", p)
		}
	}
	if d, err := time.ParseDuration(s.StopGracePeriod); err != nil || d <= n.GracePeriod {
		t.Errorf("stop_grace_period %q: want more than the node's grace_period %s", s.StopGracePeriod, n.GracePeriod)
	}
}

// TestComposeOrigin: the origin is on the nodes' network, publishes
// nothing, and is what the seed config's peer names.
func TestComposeOrigin(t *testing.T) {
	f := loadCompose(t)
	o, ok := f.Services["origin"]
	if !ok {
		t.Fatal("no service named origin")
	}
	if len(o.Ports) != 0 {
		t.Errorf("origin publishes %q: only the nodes should reach it", o.Ports)
	}
	if strings.Join(o.Networks, ",") != strings.Join(f.Services["node"].Networks, ",") {
		t.Errorf("origin networks %q, node networks %q", o.Networks, f.Services["node"].Networks)
	}
	doc, err := os.ReadFile("cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.ParseCluster("cluster.yaml", doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range c.Upstreams {
		for _, p := range u.Peers {
			if host, _, _ := net.SplitHostPort(p.Addr); host != "origin" {
				t.Errorf("upstream %s peer %s is not the origin service", u.Name, p.Addr)
			}
		}
	}
}
