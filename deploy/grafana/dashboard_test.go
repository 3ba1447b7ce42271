package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// query is one PromQL expression of the dashboard and where it is.
type query struct {
	where, expr string
}

// panel is the part of a Grafana panel the test reads; rows nest panels.
type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile("pingora-node.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("pingora-node.json: %v", err)
	}
	return d
}

// queries lists every PromQL expression: panel targets (rows included)
// and the template variables' label_values queries.
func (d dashboard) queries() []query {
	var out []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, query{fmt.Sprintf("panel %q %s", p.Title, tg.RefID), tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		q, ok := v.Query.(map[string]any)
		if !ok || v.Type != "query" {
			continue
		}
		s, _ := q["query"].(string)
		if m := labelValues.FindStringSubmatch(s); m != nil {
			s = m[1]
		}
		out = append(out, query{"variable " + v.Name, s})
	}
	return out
}

// TestDashboardShape: a stable uid, unique panel ids, every query target
// with a refId and the data source variable, and the variables the
// queries use exist.
func TestDashboardShape(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Fatal("want a uid and a title (links and provisioning use the uid)")
	}
	vars := map[string]bool{"__rate_interval": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	ids := map[int]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if other, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel %q: id %d is missing or also %q's", p.Title, p.ID, other)
			}
			ids[p.ID] = p.Title
			if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0) {
				t.Errorf("panel %q: want targets on the ${datasource} variable", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.RefID == "" || tg.Expr == "" {
					t.Errorf("panel %q: a target without refId or expr", p.Title)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, q := range d.queries() {
		for _, m := range regexp.MustCompile(`\$(\w+)`).FindAllStringSubmatch(q.expr, -1) {
			if !vars[m[1]] {
				t.Errorf("%s uses $%s, which is no variable", q.where, m[1])
			}
		}
	}
}

// TestDashboardMetricsExist runs a real pingora-node, sends it a little
// of every kind of traffic so that lazily created series exist, and checks
// every query of the dashboard against its /metrics: each metric it names
// is exported, each label it selects or aggregates by is one of that
// metric's labels (or a label Prometheus adds), and each exact label value
// it selects occurs. Every pingora_ metric exported must be queried by
// some panel.
func TestDashboardMetricsExist(t *testing.T) {
	d := loadDashboard(t)
	series := scrapeRunningNode(t)
	var all strings.Builder
	for _, q := range d.queries() {
		all.WriteString(q.expr + "\n")
		if problems := checkQuery(q.expr, series); len(problems) > 0 {
			t.Errorf("%s: %s\n  %s", q.where, strings.Join(problems, "; "), q.expr)
		}
	}
	// And the other way: every pingora_ metric the node exports is charted.
	for name := range series {
		queried := regexp.MustCompile(`\b` + name + `\b`).MatchString(all.String())
		if strings.HasPrefix(name, "pingora_") && !queried && !strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") {
			t.Errorf("%s is exported but no panel of pingora-node.json queries it: add one (README.md here)", name)
		}
	}
}

// TestDashboardPromQL checks that every query parses as PromQL, with
// promtool (from the prometheus package) when it is installed.
func TestDashboardPromQL(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (apt-get install prometheus); TestDashboardMetricsExist still checks the names")
	}
	d := loadDashboard(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	subst := strings.NewReplacer("$__rate_interval", "1m", "$job", ".*", "$instance", ".*")
	for i, q := range d.queries() {
		expr, _ := json.Marshal(subst.Replace(q.expr)) // a JSON string is a YAML string
		fmt.Fprintf(&rules, "      - record: dashboard:query%d\n        expr: %s\n", i, expr)
	}
	file := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}
