package kubernetes

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/pingora-go/pingora-go/deploy/internal/nodeflags"
	"github.com/pingora-go/pingora-go/node/config"
)

// measuredPeakRSS is the largest resident set measured for one node of a
// 3-node cluster under load (deploy/docker cluster, wrk -t1 -c50 -d20s at
// about 7,000 req/s: 34-36 MiB; README.md here). The memory request must
// cover it.
var measuredPeakRSS = resource.MustParse("36Mi")

// manifests holds every object of every *.yaml file in this directory,
// decoded strictly into its API type.
type manifests struct {
	sts      *appsv1.StatefulSet
	services map[string]*corev1.Service
	configs  map[string]*corev1.ConfigMap
	pdbs     []*policyv1.PodDisruptionBudget
}

// load decodes every document of every *.yaml file strictly: an unknown
// field, a duplicate key or a kind without a case below fails the test.
func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := &manifests{services: map[string]*corev1.Service{}, configs: map[string]*corev1.ConfigMap{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			if err := m.add(doc); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
		}
	}
	if m.sts == nil {
		t.Fatal("no StatefulSet")
	}
	return m
}

func (m *manifests) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	strict := func(want string, into any) error {
		if got := tm.APIVersion + " " + tm.Kind; got != want {
			return fmt.Errorf("%s, want %s", got, want)
		}
		return yaml.UnmarshalStrict(doc, into)
	}
	switch tm.Kind {
	case "StatefulSet":
		if m.sts != nil {
			return fmt.Errorf("a second StatefulSet")
		}
		m.sts = &appsv1.StatefulSet{}
		return strict("apps/v1 StatefulSet", m.sts)
	case "Service":
		var s corev1.Service
		m.services[metaName(doc)] = &s
		return strict("v1 Service", &s)
	case "ConfigMap":
		var c corev1.ConfigMap
		m.configs[metaName(doc)] = &c
		return strict("v1 ConfigMap", &c)
	case "PodDisruptionBudget":
		var p policyv1.PodDisruptionBudget
		m.pdbs = append(m.pdbs, &p)
		return strict("policy/v1 PodDisruptionBudget", &p)
	}
	return fmt.Errorf("kind %q: add a case to load and check it", tm.Kind)
}

func metaName(doc []byte) string {
	var om struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	_ = yaml.Unmarshal(doc, &om)
	return om.Metadata.Name
}

// container returns the pingora-node container and the node settings its
// arguments and environment give, as the binary would read them on pod 0.
func (m *manifests) container(t *testing.T) (*corev1.Container, *config.Node) {
	t.Helper()
	cs := m.sts.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers, want 1", len(cs))
	}
	c := &cs[0]
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			env[e.Name] = "10.244.1.7"
		case e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != "" && e.ValueFrom.SecretKeyRef.Key != "":
			env[e.Name] = "a-token-from-the-secret"
		default:
			t.Fatalf("env %s: a source this test does not know", e.Name)
		}
	}
	args := append(append([]string{}, c.Command...), c.Args...)
	n, err := nodeflags.Load(args, env, m.sts.Name+"-0")
	if err != nil {
		t.Fatalf("the binary would refuse the container's arguments and environment: %v", err)
	}
	return c, n
}

func port(t *testing.T, hostport string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

// containerPort resolves a probe's or Service's target port (a name or a
// number) to the container's port number and protocol.
func containerPort(t *testing.T, c *corev1.Container, p intstr.IntOrString, proto corev1.Protocol) int32 {
	t.Helper()
	for _, cp := range c.Ports {
		if cp.Protocol == "" {
			cp.Protocol = corev1.ProtocolTCP
		}
		if cp.Protocol == proto && ((p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal)) {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container has no %s port %s", proto, p.String())
	return 0
}

// maxVoters is how many voters autopilot makes (consensus.Config.MaxVoters).
const maxVoters = 5

// minAvailable is the fewest pods that must stay up so that any eviction
// leaves a raft quorum of the voters: replicas minus the voters that may
// fail, (voters - 1) / 2. With replicas <= 5 it is the quorum itself.
func minAvailable(replicas int) int {
	return replicas - (min(replicas, maxVoters)-1)/2
}

func TestMinAvailable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ replicas, want int }{{1, 1}, {3, 2}, {5, 3}, {7, 5}} {
		if got := minAvailable(tc.replicas); got != tc.want {
			t.Errorf("minAvailable(%d) = %d, want %d", tc.replicas, got, tc.want)
		}
	}
}

// TestClusterShape: odd replicas equal to --bootstrap-expect, started in
// parallel, joined through the headless Service that lists pods before
// they are ready, and a disruption budget that keeps a raft quorum.
func TestClusterShape(t *testing.T) {
	t.Parallel()
	m := load(t)
	c, n := m.container(t)
	spec := m.sts.Spec
	if spec.Replicas == nil || *spec.Replicas%2 == 0 {
		t.Fatalf("replicas %s: want an odd number", deref(spec.Replicas))
	}
	replicas := int(*spec.Replicas)
	if n.BootstrapExpect != replicas {
		t.Errorf("--bootstrap-expect %d, replicas %d: want them equal", n.BootstrapExpect, replicas)
	}
	if spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: no pod is ready before the cluster forms, so pods must start in parallel", spec.PodManagementPolicy)
	}
	peers := m.services[spec.ServiceName]
	if peers == nil || peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses {
		t.Fatalf("serviceName %q: want a headless Service that publishes pods not ready yet", spec.ServiceName)
	}
	podLabels := spec.Template.Labels
	checkSelects(t, "Service "+peers.Name, peers.Spec.Selector, podLabels)
	if len(n.Join) != 1 {
		t.Fatalf("join %q: want the headless Service's name only", n.Join)
	}
	host, _, _ := net.SplitHostPort(n.Join[0])
	if host != peers.Name && !strings.HasPrefix(host, peers.Name+".") {
		t.Errorf("--join host %q is not the headless Service %q", host, peers.Name)
	}
	gossip := port(t, n.GossipAddr)
	if port(t, n.Join[0]) != gossip {
		t.Errorf("--join port %d, gossip port %d", port(t, n.Join[0]), gossip)
	}
	for _, sp := range peers.Spec.Ports {
		if got := containerPort(t, c, sp.TargetPort, sp.Protocol); got != sp.Port {
			t.Errorf("peers Service port %s: %d targets container port %d", sp.Name, sp.Port, got)
		}
	}
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
		if got := containerPort(t, c, intstr.FromInt32(gossip), proto); got != gossip {
			t.Errorf("gossip %s port %d not declared", proto, gossip)
		}
	}
	// One cluster port (RPC and raft; issue 13), declared on the pod and
	// on the peers Service; raft_addr, if set, too.
	cluster := port(t, n.ClusterAddr)
	containerPort(t, c, intstr.FromInt32(cluster), corev1.ProtocolTCP)
	if !slices.ContainsFunc(peers.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Port == cluster }) {
		t.Errorf("the peers Service lacks the cluster port %d", cluster)
	}
	if n.RaftAddr != "" {
		containerPort(t, c, intstr.FromInt32(port(t, n.RaftAddr)), corev1.ProtocolTCP)
	}
	if len(m.pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(m.pdbs))
	}
	pdb := m.pdbs[0]
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != minAvailable(replicas) {
		t.Errorf("PodDisruptionBudget minAvailable %v, want %d (quorum of %d voters)", pdb.Spec.MinAvailable, minAvailable(replicas), min(replicas, maxVoters))
	}
	sel, err := metav1.LabelSelectorAsMap(pdb.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	checkSelects(t, "PodDisruptionBudget", sel, podLabels)
}

// deref prints an optional number.
func deref[T int32 | int64](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func checkSelects(t *testing.T, what string, selector, labels map[string]string) {
	t.Helper()
	if len(selector) == 0 {
		t.Errorf("%s selects every pod", what)
	}
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("%s selects %s=%s; the pods have %q", what, k, v, labels[k])
		}
	}
}

// TestProbesAndDrain: readiness on /readyz and liveness on /healthz of the
// admin port the node binds; a preStop that keeps serving while the pod
// leaves the endpoints, and a grace period that covers it plus the
// node's own drain (grace_period).
func TestProbesAndDrain(t *testing.T) {
	t.Parallel()
	m := load(t)
	c, n := m.container(t)
	admin := port(t, n.AdminAddr)
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an HTTP GET of %s", p.name, p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || containerPort(t, c, g.Port, corev1.ProtocolTCP) != admin {
			t.Errorf("%s: GET %s on port %s; want %s on the admin port %d", p.name, g.Path, g.Port.String(), p.path, admin)
		}
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
		t.Fatal("preStop: want a sleep that keeps the pod serving while it leaves the endpoints")
	}
	need := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + n.GracePeriod
	tg := m.sts.Spec.Template.Spec.TerminationGracePeriodSeconds
	if tg == nil || time.Duration(*tg)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds %s: want more than preStop + grace_period = %s", deref(tg), need)
	}
}

// TestNodeSettings: the arguments are flags the binary accepts (checked by
// container), the data dir is the per-pod volume, the seed config comes
// from the ConfigMap and is a valid cluster config, the client Service
// reaches the proxy listener, and the resources cover the measured
// footprint.
func TestNodeSettings(t *testing.T) {
	t.Parallel()
	m := load(t)
	c, n := m.container(t)
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	if vm, ok := mounts[n.DataDir]; !ok || len(m.sts.Spec.VolumeClaimTemplates) != 1 || m.sts.Spec.VolumeClaimTemplates[0].Name != vm.Name {
		t.Errorf("--data-dir %s is not the pod's volume claim", n.DataDir)
	}
	checkSeed(t, m, mounts, n.ClusterConfig)
	client := m.services["pingora-node"]
	if client == nil || len(client.Spec.Ports) != 1 || len(n.Listeners) != 1 {
		t.Fatal("want a Service pingora-node with one port, to the one listener")
	}
	if got := containerPort(t, c, client.Spec.Ports[0].TargetPort, corev1.ProtocolTCP); got != port(t, n.Listeners[0].Addr) {
		t.Errorf("Service pingora-node targets port %d; the listener is %s", got, n.Listeners[0].Addr)
	}
	req := c.Resources.Requests
	if req.Cpu().IsZero() || req.Memory().Cmp(measuredPeakRSS) < 0 {
		t.Errorf("requests cpu %s memory %s: want cpu set and memory >= the measured %s", req.Cpu(), req.Memory(), measuredPeakRSS.String())
	}
	if lim := c.Resources.Limits.Memory(); lim.IsZero() || lim.Cmp(*req.Memory()) < 0 {
		t.Errorf("memory limit %s: want one, at least the request", lim)
	}
	ps, cs := m.sts.Spec.Template.Spec.SecurityContext, c.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser != 65532 {
		t.Error("pod securityContext: want runAsNonRoot and runAsUser 65532, the image's user")
	}
	if cs == nil || cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem {
		t.Error("container securityContext: want readOnlyRootFilesystem")
	} else if _, ok := mounts["/tmp"]; !ok {
		t.Error("read-only root: the upgrade socket's directory /tmp needs a volume")
	}
}

// checkSeed: --cluster-config names a key of a ConfigMap mounted
// read-only, and that key holds a valid cluster config.
func checkSeed(t *testing.T, m *manifests, mounts map[string]corev1.VolumeMount, path string) {
	t.Helper()
	vm, ok := mounts[filepath.Dir(path)]
	if !ok || !vm.ReadOnly {
		t.Fatalf("--cluster-config %s: no read-only mount of its directory", path)
	}
	var cmName string
	for _, v := range m.sts.Spec.Template.Spec.Volumes {
		if v.Name == vm.Name && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	cm := m.configs[cmName]
	if cm == nil {
		t.Fatalf("--cluster-config %s: volume %q is not a ConfigMap of this directory", path, vm.Name)
	}
	doc, ok := cm.Data[filepath.Base(path)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", cmName, filepath.Base(path))
	}
	if _, err := config.ParseCluster("ConfigMap "+cmName, []byte(doc)); err != nil {
		t.Errorf("seed cluster config: %v", err)
	}
}
