package prometheus

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pingora-go/pingora-go/deploy/internal/nodeflags"
)

// scrapeFile is the part of Prometheus's configuration these files use,
// decoded strictly: a key outside it fails the test.
type scrapeFile struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName      string `yaml:"job_name"`
		MetricsPath  string `yaml:"metrics_path"`
		DNSSDConfigs []struct {
			Names           []string `yaml:"names"`
			Type            string   `yaml:"type"`
			Port            int      `yaml:"port"`
			RefreshInterval string   `yaml:"refresh_interval"`
		} `yaml:"dns_sd_configs"`
		KubernetesSDConfigs []struct {
			Role string `yaml:"role"`
		} `yaml:"kubernetes_sd_configs"`
		RelabelConfigs []struct {
			SourceLabels []string `yaml:"source_labels"`
			Regex        string   `yaml:"regex"`
			Action       string   `yaml:"action"`
			TargetLabel  string   `yaml:"target_label"`
		} `yaml:"relabel_configs"`
	} `yaml:"scrape_configs"`
}

func decodeStrict(t *testing.T, file string, into any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func adminPort(t *testing.T, args []string, env map[string]string) int {
	t.Helper()
	n, err := nodeflags.Load(args, env, "node-0")
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(n.AdminAddr)
	port, _ := strconv.Atoi(p)
	return port
}

// TestComposeScrape: the compose job resolves the compose service's name
// and scrapes /metrics on the admin port the nodes bind.
func TestComposeScrape(t *testing.T) {
	t.Parallel()
	var compose struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	data, err := os.ReadFile("../docker/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatal(err)
	}
	node, ok := compose.Services["node"]
	if !ok {
		t.Fatal("docker-compose.yml has no service node")
	}
	admin := adminPort(t, node.Command, map[string]string{"PINGORA_ADMIN_TOKEN": "t"})
	var f scrapeFile
	decodeStrict(t, "compose.yml", &f)
	if len(f.ScrapeConfigs) != 1 || len(f.ScrapeConfigs[0].DNSSDConfigs) != 1 {
		t.Fatal("want one job with one dns_sd_configs entry")
	}
	job := f.ScrapeConfigs[0]
	sd := job.DNSSDConfigs[0]
	if len(sd.Names) != 1 || sd.Names[0] != "node" || sd.Type != "A" || sd.Port != admin || job.MetricsPath != "/metrics" {
		t.Errorf("scrapes %v type %s port %d path %s; want the service name node, A records, port %d, /metrics",
			sd.Names, sd.Type, sd.Port, job.MetricsPath, admin)
	}
	promtool(t, "compose.yml")
}

// TestKubernetesScrape: the Kubernetes job keeps the StatefulSet's pods by
// their label and their container port named "admin", which is the admin
// port the node binds.
func TestKubernetesScrape(t *testing.T) {
	t.Parallel()
	var sts struct {
		Spec struct {
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec struct {
					Containers []struct {
						Args  []string `yaml:"args"`
						Ports []struct {
							Name          string `yaml:"name"`
							ContainerPort int    `yaml:"containerPort"`
						} `yaml:"ports"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	data, err := os.ReadFile("../kubernetes/statefulset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &sts); err != nil {
		t.Fatal(err)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	admin := adminPort(t, c.Args, map[string]string{"PINGORA_ADMIN_TOKEN": "t", "PINGORA_ADVERTISE_ADDR": "10.0.0.9"})
	var f scrapeFile
	decodeStrict(t, "kubernetes.yml", &f)
	if len(f.ScrapeConfigs) != 1 || len(f.ScrapeConfigs[0].KubernetesSDConfigs) != 1 || f.ScrapeConfigs[0].KubernetesSDConfigs[0].Role != "pod" {
		t.Fatal("want one job discovering pods")
	}
	keep := map[string]string{}
	for _, r := range f.ScrapeConfigs[0].RelabelConfigs {
		if r.Action == "keep" && len(r.SourceLabels) == 1 {
			keep[r.SourceLabels[0]] = r.Regex
		}
	}
	if v := keep["__meta_kubernetes_pod_label_app_kubernetes_io_name"]; v == "" || v != sts.Spec.Template.Metadata.Labels["app.kubernetes.io/name"] {
		t.Errorf("keeps pods labelled app.kubernetes.io/name=%q; the StatefulSet's are %q", v, sts.Spec.Template.Metadata.Labels["app.kubernetes.io/name"])
	}
	portName := keep["__meta_kubernetes_pod_container_port_name"]
	found := false
	for _, p := range c.Ports {
		found = found || (p.Name == portName && p.ContainerPort == admin)
	}
	if !found {
		t.Errorf("keeps container port %q; the admin port %d has another name", portName, admin)
	}
}

// promtool checks the file with Prometheus's own parser when promtool is
// installed (Debian's build lacks Kubernetes discovery, so only the
// compose file is checked this way).
func promtool(t *testing.T, file string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Logf("promtool is not installed: %s checked by this test only", file)
		return
	}
	if out, err := exec.Command(bin, "check", "config", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check config %s: %v\n%s", file, err, out)
	}
}
