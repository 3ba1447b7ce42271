package grafana

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// seriesSet maps each sample name of a /metrics page (histograms as
// _bucket, _sum and _count) to the label sets it has.
type seriesSet map[string][]map[string]string

// promMade are series Prometheus makes for every target itself.
var promMade = map[string]bool{"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true}

// targetLabels are labels Prometheus adds to every series it scrapes.
var targetLabels = map[string]bool{"job": true, "instance": true}

// clusterYAML routes /dead/ to two peers that refuse connections (502s,
// upstream errors, a retry, a health transition), /cached/ to origin
// through the cache, and the rest to origin; /limited/ admits one request
// a minute per client (an allowed and a denied decision).
const clusterYAML = `upstreams:
  - name: origin
    peers: [{addr: %s}]
  - name: dead
    retries: 1
    try_unhealthy: true
    health_check: {type: tcp, interval: 100ms, fall: 1}
    peers: [{addr: %s}, {addr: %s}]
routes:
  - {path_prefix: /dead/, upstream: dead}
  - {path_prefix: /cached/, upstream: origin, cache: {enabled: true}}
  - {upstream: origin}
rate_limits:
  - {name: limited, match: {path_prefix: /limited/}, limit: 1, period: 1m}
`

// scrapeRunningNode builds pingora-node, runs it from flags alone with
// the cluster config above, sends it good, failing and malformed
// requests, waits until the lazily created series exist, and returns its
// /metrics.
func scrapeRunningNode(t *testing.T) seriesSet {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "pingora-node")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/pingora-go/pingora-go/cmd/pingora-node").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	o := newOrigin()
	origin := httptest.NewServer(o)
	t.Cleanup(origin.Close)
	t.Cleanup(o.releaseAll)
	cluster := filepath.Join(dir, "cluster.yaml")
	doc := fmt.Sprintf(clusterYAML, origin.Listener.Addr(), freeAddr(t), freeAddr(t))
	if err := os.WriteFile(cluster, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	proxy, admin, gossip := freeAddr(t), freeAddr(t), freeAddr(t)
	// A cluster of two (gossip, raft on one cluster port), so that the
	// cluster RPC and membership series exist: dash leads; a write sent to
	// dash2 reaches it over the cluster RPC.
	runNode(t, bin, "--name", "dash", "--listen", proxy, "--admin-addr", admin, "--cluster-config", cluster,
		"--gossip-addr", gossip, "--gossip-profile", "fast", "--cluster-addr", freeAddr(t), "--data-dir", filepath.Join(dir, "dash"))
	admin2 := freeAddr(t)
	runNode(t, bin, "--name", "dash2", "--listen", freeAddr(t), "--admin-addr", admin2, "--cluster-config", cluster,
		"--gossip-addr", freeAddr(t), "--gossip-profile", "fast", "--cluster-addr", freeAddr(t), "--data-dir", filepath.Join(dir, "dash2"),
		"--join", gossip)
	base := "http://" + admin
	waitFor(t, "the node is ready", func() bool { return get(base+"/readyz") == http.StatusOK })
	for _, path := range []string{"/", "/a", "/dead/x", "/cached/a", "/cached/a", "/cached/nostore", "/limited/a", "/limited/a"} {
		get("http://" + proxy + path)
	}
	malformed(t, proxy)
	lockWait(t, proxy, base, o)
	waitFor(t, "a write sent to dash2 answered by dash over the cluster RPC", func() bool {
		return put("http://"+admin2+"/v1/config", doc) == http.StatusOK
	})
	var series seriesSet
	waitFor(t, "the lazily created series", func() bool {
		series = scrape(t, base+"/metrics")
		return len(series["pingora_upstream_health_transitions_total"]) > 0 && len(series["pingora_cache_uncacheable_total"]) > 0 &&
			len(series["pingora_upstream_errors_total"]) > 0 && len(series["pingora_downstream_rejected_total"]) > 0 &&
			len(series["pingora_ratelimit_decisions_total"]) > 1 && len(series["pingora_wire_server_calls_total"]) > 0
	})
	for name, sets := range scrape(t, "http://"+admin2+"/metrics") { // the client side of the calls
		series[name] = append(series[name], sets...)
	}
	return series
}

// runNode runs pingora-node with args until the test ends.
func runNode(t *testing.T, bin string, args ...string) {
	t.Helper()
	var logs bytes.Buffer
	cmd := exec.Command(bin, append([]string{"run"}, args...)...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", args[1], logs.String())
		}
	})
}

// put returns the status of a PUT of body, or 0 when it fails.
func put(url, body string) int {
	req, _ := http.NewRequest("PUT", url, strings.NewReader(body))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// origin answers "ok"; under /cached/ with max-age=60 (no-store for
// /cached/nostore), and a /cached/hold-N request waits until released,
// so that a second request for it waits on the cache lock.
type origin struct {
	mu      sync.Mutex
	entered chan string              // paths of hold requests as they arrive
	release map[string]chan struct{} // closed to answer a hold request
}

func newOrigin() *origin {
	return &origin{entered: make(chan string, 16), release: map[string]chan struct{}{}} // 16: more than lockWait's tries
}

func (o *origin) hold(path string) chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.release[path] == nil {
		o.release[path] = make(chan struct{})
	}
	return o.release[path]
}

// answer releases the hold request for path (all of them with "").
func (o *origin) answer(path string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for p, ch := range o.release {
		if path == "" || p == path {
			close(ch)
			delete(o.release, p)
		}
	}
}

func (o *origin) releaseAll() { o.answer("") }

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/cached/nostore":
		w.Header().Set("Cache-Control", "no-store")
	case strings.HasPrefix(r.URL.Path, "/cached/hold-"):
		ch := o.hold(r.URL.Path)
		o.entered <- r.URL.Path
		<-ch
		fallthrough
	case strings.HasPrefix(r.URL.Path, "/cached/"):
		w.Header().Set("Cache-Control", "max-age=60")
	}
	io.WriteString(w, "ok")
}

// lockWait makes a request wait on the cache lock: while the origin holds
// the fill of a key, a second request for it arrives; the origin answers
// after hold. The wait is counted when it ends, so a try whose second
// request came too late is repeated with a new key and a longer hold.
func lockWait(t *testing.T, proxy, admin string, o *origin) {
	t.Helper()
	for try, hold := 1, 200*time.Millisecond; try <= 5; try, hold = try+1, 2*hold {
		path := fmt.Sprintf("/cached/hold-%d", try)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); get("http://" + proxy + path) }()
		<-o.entered
		go func() { defer wg.Done(); get("http://" + proxy + path) }()
		time.Sleep(hold) // sleep-ok: the time the second request has to reach the cache lock; doubled on each try
		o.answer(path)
		wg.Wait()
		if len(scrape(t, admin+"/metrics")["pingora_cache_lock_waits_total"]) > 0 {
			t.Logf("a request waited on the cache lock (try %d, origin held %s)", try, hold)
			return
		}
	}
	t.Fatal("no request waited on the cache lock in 5 tries")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// get returns the status of a GET, or 0 when it fails.
func get(url string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// malformed sends a request head with both Content-Length and
// Transfer-Encoding, which the proxy refuses (smuggling defence).
func malformed(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	io.Copy(io.Discard, c)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20 s for %s", what)
		}
		time.Sleep(50 * time.Millisecond) // sleep-ok: polling a real process, bounded by the deadline
	}
}

func scrape(t *testing.T, url string) seriesSet {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	out := seriesSet{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out.add(name, f.GetType(), m, labels)
		}
	}
	return out
}

// add records one metric under the sample names it is exposed as.
func (s seriesSet) add(name string, typ dto.MetricType, m *dto.Metric, labels map[string]string) {
	with := func(k, v string) map[string]string {
		l := map[string]string{k: v}
		for k, v := range labels {
			l[k] = v
		}
		return l
	}
	switch typ {
	case dto.MetricType_HISTOGRAM:
		for _, b := range m.GetHistogram().GetBucket() {
			s[name+"_bucket"] = append(s[name+"_bucket"], with("le", fmt.Sprint(b.GetUpperBound())))
		}
		s[name+"_bucket"] = append(s[name+"_bucket"], with("le", "+Inf"))
		s[name+"_sum"] = append(s[name+"_sum"], labels)
		s[name+"_count"] = append(s[name+"_count"], labels)
	case dto.MetricType_SUMMARY:
		for _, q := range m.GetSummary().GetQuantile() {
			s[name] = append(s[name], with("quantile", fmt.Sprint(q.GetQuantile())))
		}
		s[name+"_sum"] = append(s[name+"_sum"], labels)
		s[name+"_count"] = append(s[name+"_count"], labels)
	default:
		s[name] = append(s[name], labels)
	}
}

var (
	// selectorRE finds a metric with its label matchers: name{...}.
	selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)
	// exportedRE finds the names of the node's own metrics anywhere.
	exportedRE = regexp.MustCompile(`\b((?:pingora|go|process)_[a-z0-9_]+)\b`)
	matcherRE  = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*$`)
	byRE       = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
)

// checkQuery returns what in expr the node's series do not have.
func checkQuery(expr string, series seriesSet) []string {
	var problems []string
	names := map[string]bool{}
	for _, m := range exportedRE.FindAllStringSubmatch(expr, -1) {
		names[m[1]] = true
	}
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		names[m[1]] = true
		for _, part := range strings.Split(m[2], ",") {
			mm := matcherRE.FindStringSubmatch(part)
			if mm == nil {
				problems = append(problems, fmt.Sprintf("cannot read matcher %q", part))
				continue
			}
			if p := checkLabel(series[m[1]], mm[1], mm[2], mm[3]); p != "" && !promMade[m[1]] {
				problems = append(problems, m[1]+": "+p)
			}
		}
	}
	for name := range names {
		if len(series[name]) == 0 && !promMade[name] {
			problems = append(problems, name+" is not exported")
		}
	}
	for _, m := range byRE.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); !hasLabel(series, names, l) {
				problems = append(problems, "no metric of the query has label "+l+" to aggregate by")
			}
		}
	}
	return problems
}

// checkLabel: the metric has label (or Prometheus adds it), and an exact
// match names a value that occurs.
func checkLabel(sets []map[string]string, label, op, value string) string {
	if targetLabels[label] {
		return ""
	}
	found := false
	for _, l := range sets {
		v, ok := l[label]
		if ok && (op != "=" || strings.Contains(value, "$") || v == value) {
			return ""
		}
		found = found || ok
	}
	if found {
		return fmt.Sprintf("no series with %s=%q", label, value)
	}
	return "no label " + label
}

func hasLabel(series seriesSet, names map[string]bool, label string) bool {
	if targetLabels[label] {
		return true
	}
	for name := range names {
		for _, l := range series[name] {
			if _, ok := l[label]; ok {
				return true
			}
		}
	}
	return false
}
