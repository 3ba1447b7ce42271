package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// result file layout: DIR/NAME.json (everything), DIR/NAME.md (the
// report section), DIR/NAME.png (the timeline).

type resultDoc struct {
	Scenario   string         `json:"scenario"`
	Title      string         `json:"title"`
	Started    time.Time      `json:"started"`
	Seconds    float64        `json:"seconds"`
	Profile    string         `json:"profile"`
	Short      bool           `json:"short"`
	Nodes      int            `json:"nodes"`
	WindowSecs float64        `json:"window_seconds"`
	AgreeGoal  float64        `json:"agree_goal_seconds"`
	LoadAvg    [2]string      `json:"load_average_start_end"`
	FaultAt    float64        `json:"fault_at"`
	HealAt     float64        `json:"heal_at"`
	HealedAt   float64        `json:"healed_at"`
	AgreedAt   float64        `json:"agreed_at"`
	Faulted    []span         `json:"faulted"`
	Events     []event        `json:"events"`
	Invariants []invariant    `json:"invariants"`
	Passed     int            `json:"passed"`
	Failed     int            `json:"failed"`
	Figures    map[string]any `json:"figures"`
	Timeline   []bucket       `json:"timeline"`
}

// bucket is 100 ms of the timeline: requests started and failed.
type bucket struct {
	T        float64 `json:"t"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
}

func (r *Run) timeline() []bucket {
	var out []bucket
	for _, l := range r.loads {
		for _, res := range l.all() {
			i := int(res.T * 10)
			if i < 0 {
				continue
			}
			for len(out) <= i {
				out = append(out, bucket{T: float64(len(out)) / 10})
			}
			out[i].Requests++
			if !res.Success {
				out[i].Errors++
			}
		}
	}
	// The timeline starts with the load.
	for len(out) > 0 && out[0].Requests == 0 {
		out = out[1:]
	}
	return out
}

func (r *Run) writeResults(passed, failed int) error {
	if err := os.MkdirAll(r.out, 0o755); err != nil {
		return err
	}
	tl := r.timeline()
	doc := resultDoc{
		Scenario: r.sc.Name, Title: r.sc.Title, Started: r.start.UTC().Truncate(time.Second), Seconds: r.Now(),
		Profile: r.profile, Short: r.short, Nodes: r.sc.Nodes, WindowSecs: r.sc.Window.Seconds(),
		AgreeGoal: r.agreeGoal.Seconds(), LoadAvg: [2]string{r.loadAvgAtStart, loadAvg()},
		FaultAt: r.faultAt, HealAt: r.healAt, HealedAt: r.healedAt, AgreedAt: r.agreedAt,
		Faulted: r.spans, Events: r.events, Invariants: r.invs, Passed: passed, Failed: failed,
		Figures: r.figures, Timeline: tl,
	}
	js, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return err
	}
	base := filepath.Join(r.out, r.sc.Name)
	if err := os.WriteFile(base+".json", js, 0o644); err != nil {
		return err
	}
	png := ""
	if len(tl) > 0 {
		if err := r.plot(base, tl); err != nil {
			fmt.Fprintln(os.Stderr, "runner: plot:", err)
		} else {
			png = filepath.Base(base) + ".png"
		}
	}
	return os.WriteFile(base+".md", []byte(r.markdown(doc, png)), 0o644)
}

// plot draws requests and errors per 100 ms with gnuplot, the fault
// shaded red and the time from the heal to agreement shaded yellow.
func (r *Run) plot(base string, tl []bucket) error {
	var dat bytes.Buffer
	for _, b := range tl {
		fmt.Fprintf(&dat, "%.1f %d %d\n", b.T, b.Requests, b.Errors)
	}
	if err := os.WriteFile(base+".dat", dat.Bytes(), 0o644); err != nil {
		return err
	}
	defer os.Remove(base + ".dat")
	agreed := r.agreedAt
	if agreed < 0 {
		agreed = tl[len(tl)-1].T
	}
	script := fmt.Sprintf(`set terminal pngcairo size 900,300 font "sans,9"
set output %q
set title %q
set xlabel "seconds since the run started"
set ylabel "per 100 ms"
set key top left
set object 1 rect from %.2f, graph 0 to %.2f, graph 1 fc rgb "#f4b6b6" fs solid 0.5 noborder behind
set object 2 rect from %.2f, graph 0 to %.2f, graph 1 fc rgb "#f4e4a6" fs solid 0.5 noborder behind
set yrange [0:*]
plot %q using 1:2 with steps lw 1 lc rgb "#3060c0" title "requests", \
     %q using 1:3 with impulses lw 2 lc rgb "#d02020" title "errors"
`, base+".png", r.sc.Name+": "+r.sc.Title+" (red: fault, yellow: heal to agreement)",
		r.faultAt, r.healedAt, r.healedAt, agreed, base+".dat", base+".dat")
	cmd := exec.Command("gnuplot")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %w: %s", err, out)
	}
	return nil
}

func (r *Run) markdown(doc resultDoc, png string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s: %s\n\n", doc.Scenario, doc.Title)
	mode := ""
	if doc.Short {
		mode = ", short phases"
	}
	fmt.Fprintf(&b, "%s, %d nodes, gossip profile `%s`%s, %.0f s in all; load average %s at the start, %s at the end.\n",
		doc.Started.Format("2006-01-02 15:04 UTC"), doc.Nodes, doc.Profile, mode, doc.Seconds, doc.LoadAvg[0], doc.LoadAvg[1])
	fmt.Fprintf(&b, "Fault at %.1f s, heal at %.1f s (done %.1f s), agreement at %s. Error window: %s after the fault and after the heal; a faulted node until agreement plus the window.\n\n",
		doc.FaultAt, doc.HealAt, doc.HealedAt, secsOrNever(doc.AgreedAt), time.Duration(doc.WindowSecs*float64(time.Second)))
	fmt.Fprintf(&b, "| invariant | result | detail |\n|---|---|---|\n")
	for _, inv := range doc.Invariants {
		res := "pass"
		if !inv.Pass {
			res = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", mdEscape(inv.Name), res, mdEscape(inv.Detail))
	}
	fmt.Fprintf(&b, "\n**%d passed, %d failed**\n\n", doc.Passed, doc.Failed)
	if len(doc.Events) > 0 {
		b.WriteString("<details><summary>events</summary>\n\n")
		for _, e := range doc.Events {
			fmt.Fprintf(&b, "- %.2f s: %s\n", e.T, mdEscape(e.What))
		}
		b.WriteString("\n</details>\n\n")
	}
	if png != "" {
		fmt.Fprintf(&b, "![%s timeline](results/%s)\n\n", doc.Scenario, png)
	}
	return b.String()
}

func secsOrNever(t float64) string {
	if t < 0 {
		return "never (within 90 s)"
	}
	return fmt.Sprintf("%.1f s", t)
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
