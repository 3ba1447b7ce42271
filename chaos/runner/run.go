package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Scenario is one fault: what it does, to how many nodes, and the error
// window it allows after the fault and after the heal.
type Scenario struct {
	Name, Title string
	Nodes       int
	// Window: requests to nodes that were not faulted may fail this long
	// after the fault starts and after the heal; requests to a faulted
	// node may fail from the fault until this long after agreement.
	Window time.Duration
	// Hold is how long the fault lasts (Inject returns at its start).
	Hold time.Duration
	// Setup runs once the cluster agrees, before load starts.
	Setup func(r *Run) error
	// Config renders the cluster config the writer puts, with a marker.
	Config func(marker int) string
	// Inject starts the fault (for churn and upgrade: does the whole
	// process); Heal ends it.
	Inject, Heal func(r *Run) error
	// Loads adds the scenario's own load (on top of the proxy load).
	Loads func(r *Run) []*load
	// Check adds the scenario's own invariants at the end.
	Check func(r *Run)
	// AgreeAfter, when set, replaces the agreement goal of the profile.
	AgreeAfter time.Duration
}

// invariant is one checked property.
type invariant struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// span marks a node faulted from From until To (seconds since the start;
// To < 0: until agreement after the heal, plus the window).
type span struct {
	Node     string  `json:"node"`
	From, To float64 `json:"-"`
	What     string  `json:"what"`
}

type event struct {
	T    float64 `json:"t"`
	What string  `json:"what"`
}

// Run is one execution of a scenario.
type Run struct {
	ctx     context.Context
	sc      *Scenario
	C       *Cluster
	profile string
	short   bool
	out     string

	start time.Time
	mu    sync.Mutex
	nodes []Node

	spans                         []span
	events                        []event
	faultAt, healAt, healedAt     float64
	agreedAt                      float64 // -1: never
	settleSecs                    float64 // from the look after the heal to resources within bound
	invs                          []invariant
	figures                       map[string]any
	loads                         []*load
	w                             *writer
	samp                          *sampler
	loadStartAt, loadAvgAtStart   string
	agreeGoal                     time.Duration
	finalVersion, maxAckedVersion int64
}

// Since is t in seconds since the run started.
func (r *Run) Since(t time.Time) float64 { return t.Sub(r.start).Seconds() }

// Now is the present in seconds since the run started.
func (r *Run) Now() float64 { return r.Since(time.Now()) }

// Nodes returns the last node table (refreshed every half second).
func (r *Run) Nodes() []Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Node(nil), r.nodes...)
}

// Refresh reads the node table from docker now.
func (r *Run) Refresh() error {
	nodes, err := r.C.Nodes(r.ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.nodes = nodes
	r.mu.Unlock()
	return nil
}

// Running is the nodes that run and are not paused.
func (r *Run) Running() []Node {
	var out []Node
	for _, n := range r.Nodes() {
		if n.Running && !n.Paused {
			out = append(out, n)
		}
	}
	return out
}

// ByName finds a node.
func (r *Run) ByName(name string) (Node, bool) {
	for _, n := range r.Nodes() {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Event logs and records what happened when.
func (r *Run) Event(format string, args ...any) {
	e := event{T: r.Now(), What: fmt.Sprintf(format, args...)}
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	fmt.Printf("  %7.2fs  %s\n", e.T, e.What)
}

// Fault marks a node faulted from now until agreement after the heal.
func (r *Run) Fault(node, what string) {
	r.mu.Lock()
	r.spans = append(r.spans, span{Node: node, From: r.Now(), To: -1, What: what})
	r.mu.Unlock()
}

// FaultUntil marks a node faulted from from to to.
func (r *Run) FaultUntil(node, what string, from, to float64) {
	r.mu.Lock()
	r.spans = append(r.spans, span{Node: node, From: from, To: to, What: what})
	r.mu.Unlock()
}

// Check records an invariant.
func (r *Run) Check(name string, pass bool, format string, args ...any) {
	inv := invariant{Name: name, Pass: pass, Detail: fmt.Sprintf(format, args...)}
	r.invs = append(r.invs, inv)
	word := "PASS"
	if !pass {
		word = "FAIL"
	}
	fmt.Printf("%s %s: %s\n", word, name, inv.Detail)
}

// Figure records a measured figure for the JSON result.
func (r *Run) Figure(name string, v any) {
	r.mu.Lock()
	r.figures[name] = v
	r.mu.Unlock()
}

// Sleep waits d or until the run is cancelled.
func (r *Run) Sleep(d time.Duration) {
	select {
	case <-r.ctx.Done():
	case <-time.After(d):
	}
}

// WaitAgree polls until the running nodes agree or limit passes; it
// returns the seconds it took, or -1.
func (r *Run) WaitAgree(limit time.Duration) (float64, string) {
	secs, why, _ := r.waitAgree(limit)
	return secs, why
}

// waitAgree is WaitAgree that also returns each reason for disagreement
// as it changed, with the seconds since the wait began.
func (r *Run) waitAgree(limit time.Duration) (float64, string, []string) {
	start := time.Now()
	why, last := "", ""
	var trace []string
	for time.Since(start) < limit && r.ctx.Err() == nil {
		if err := r.Refresh(); err == nil {
			var ok bool
			if ok, why = agreement(r.ctx, r.Running()); ok {
				return time.Since(start).Seconds(), why, trace
			}
			if why != last {
				trace = append(trace, fmt.Sprintf("%.2f s: %s", time.Since(start).Seconds(), why))
				last = why
			}
		}
		r.Sleep(200 * time.Millisecond)
	}
	return -1, why, trace
}

func (r *Run) phase() time.Duration {
	if r.short {
		return 4 * time.Second
	}
	return 8 * time.Second
}

// Execute runs the scenario and returns the number of failed invariants.
func (r *Run) Execute() int {
	r.start, r.figures, r.agreedAt = time.Now(), map[string]any{}, -1
	r.agreeGoal = 5 * time.Second
	if r.profile == "fast" {
		r.agreeGoal = 2 * time.Second
	}
	if r.sc.AgreeAfter > 0 {
		r.agreeGoal = r.sc.AgreeAfter
	}
	r.loadAvgAtStart = loadAvg()
	fmt.Printf("== %s: %s (project %s, %d nodes, profile %s, load average %s)\n", r.sc.Name, r.sc.Title, r.C.Project, r.sc.Nodes, r.profile, r.loadAvgAtStart)
	defer func() {
		// Cleanup whatever happened: a fresh context, the run's may be done.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := r.C.Down(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "runner: down:", err)
		}
	}()
	if !r.setup() {
		return r.finish()
	}
	r.exercise()
	r.verify()
	return r.finish()
}

// setup starts the cluster and waits until it agrees.
func (r *Run) setup() bool {
	if err := r.C.Scale(r.ctx, r.sc.Nodes); err != nil {
		r.Check("cluster starts", false, "%v", err)
		return false
	}
	secs, why := r.WaitAgree(120 * time.Second)
	if secs < 0 {
		r.Check("cluster starts", false, "%d nodes did not agree within 120 s: %s", r.sc.Nodes, why)
		return false
	}
	r.Event("%d nodes agree (%s) %.1f s after compose up", r.sc.Nodes, why, secs)
	if r.sc.Setup != nil {
		if err := r.sc.Setup(r); err != nil {
			r.Check("scenario setup", false, "%v", err)
			return false
		}
	}
	return true
}

// exercise runs load, writer and sampler around the fault and the heal.
func (r *Run) exercise() {
	ctx, stop := context.WithCancel(r.ctx)
	var wg sync.WaitGroup
	goRun := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	goRun(func() { // the node table follows restarts and scaling
		for ctx.Err() == nil {
			r.Refresh()
			r.Sleep(500 * time.Millisecond)
		}
	})
	r.samp = &sampler{samples: map[string][]sample{}}
	goRun(func() { r.samp.run(ctx, r, time.Second) })
	r.loads = []*load{{kind: "proxy", rate: 200, maxInFlight: 200, ok: originOK,
		path: func(seq int) string { return fmt.Sprintf("/chaos/%d", seq) }}}
	if r.sc.Loads != nil {
		r.loads = append(r.loads, r.sc.Loads(r)...)
	}
	for _, l := range r.loads {
		goRun(func() { l.run(ctx, r) })
	}
	r.w = &writer{base: r.sc.Config, token: r.C.Token}
	if r.w.base == nil {
		r.w.base = baseConfig("")
	}
	if n := r.Running(); len(n) > 0 {
		if v, val, err := readDoc(n[0]); err == nil {
			r.w.init = regState{Version: v, Value: val}
		}
	}
	for c := 0; c < 4; c++ { // two writers, two readers
		goRun(func() { r.w.run(ctx, r, c, c < 2) })
	}
	r.Event("load: %d req/s over the nodes' proxies; 2 config writers and 2 readers through random nodes", r.loads[0].rate)
	r.Sleep(r.phase())

	r.faultAt = r.Now()
	if err := r.sc.Inject(r); err != nil {
		r.Check("fault injected", false, "%v", err)
	}
	r.Sleep(r.sc.Hold)
	r.healAt = r.Now()
	if r.sc.Heal != nil {
		if err := r.sc.Heal(r); err != nil {
			r.Check("fault healed", false, "%v", err)
		}
	}
	r.healedAt = r.Now()
	// Config writes pause while the agreement is measured (the config
	// version would move under it), and resume after.
	r.w.paused.Store(true)
	secs, why, trace := r.waitAgree(90 * time.Second)
	r.w.paused.Store(false)
	r.Figure("agree_trace", trace)
	if secs >= 0 {
		r.agreedAt = r.healedAt + secs
		r.Event("agreement %.2f s after the heal: %s", secs, why)
	} else {
		r.Event("no agreement within 90 s of the heal: %s", why)
	}
	r.Check(fmt.Sprintf("agreement after the heal within %s (members, ring digest, config version, leader)", r.agreeGoal),
		secs >= 0 && secs <= r.agreeGoal.Seconds(), "%s%s", agreeDetail(secs, why), traceTail(trace, secs > r.agreeGoal.Seconds() || secs < 0))
	r.Figure("agree_seconds", secs)
	post := r.phase()
	if d, err := time.ParseDuration(os.Getenv("CHAOS_POST")); err == nil && d > 0 {
		post = d // a longer look after the heal (leaks that take time to close)
	}
	r.Sleep(post)
	r.settle()
	stop()
	wg.Wait()
}

// settleMax bounds the wait for goroutines and fds to come back within
// checkGrowth's bound after the heal: longer than the upstream pool's
// 90 s idle timeout, which a node that served a burst (a paused node's
// listen backlog) needs to give its connections back.
const settleMax = 150 * time.Second

// settle waits, with the load going on, until every node's goroutines
// and fds are within checkGrowth's bound, for at most settleMax: bounded
// means that they come back, not that they never rise. Most scenarios
// are within it at once; how long it took is a figure of the result.
func (r *Run) settle() {
	start := r.Now()
	for r.ctx.Err() == nil {
		if bad, _ := r.growth(); len(bad) == 0 || r.Now()-start >= settleMax.Seconds() {
			break
		}
		r.Sleep(2 * time.Second)
	}
	r.settleSecs = r.Now() - start
	r.Figure("settle_seconds", r.settleSecs)
	if r.settleSecs >= 2 {
		r.Event("goroutines and fds back within the bound %.1f s after the look after the heal", r.settleSecs)
	}
}

// traceTail lists the last reasons the nodes did not agree, when asked.
func traceTail(trace []string, show bool) string {
	if !show || len(trace) == 0 {
		return ""
	}
	return "; waited on: " + strings.Join(trace[max(0, len(trace)-3):], "; ")
}

func agreeDetail(secs float64, why string) string {
	if secs < 0 {
		return "no agreement within 90 s: " + why
	}
	return fmt.Sprintf("%.2f s (%s)", secs, why)
}

// verify checks the common invariants and the scenario's.
func (r *Run) verify() {
	r.checkErrors()
	r.checkWrites()
	r.checkGrowth()
	if r.sc.Check != nil {
		r.sc.Check(r)
	}
}

// excused says whether a failed request at t to node was allowed.
func (r *Run) excused(node string, t float64) bool {
	w := r.sc.Window.Seconds()
	if (t >= r.faultAt && t <= r.faultAt+w) || (t >= r.healAt && t <= r.healedAt+w) {
		return true
	}
	end := r.agreedAt
	if end < 0 {
		end = 1e9
	}
	for _, s := range r.spans {
		to := s.To
		if to < 0 {
			to = end
		}
		if s.Node == node && t >= s.From && t <= to+w {
			return true
		}
	}
	return false
}

func (r *Run) checkErrors() {
	var total, errs, faulted, windowed, outside int
	var examples []string
	for _, l := range r.loads {
		for _, res := range l.all() {
			total++
			if res.Success {
				continue
			}
			errs++
			isFaulted := false
			for _, s := range r.spans {
				if s.Node == res.Node {
					isFaulted = true
				}
			}
			switch {
			case r.excused(res.Node, res.T) && isFaulted:
				faulted++
			case r.excused(res.Node, res.T):
				windowed++
			default:
				outside++
				if len(examples) < 3 {
					examples = append(examples, fmt.Sprintf("%.2fs %s %s", res.T, res.Node, res.Err))
				}
			}
		}
	}
	r.Figure("requests", total)
	r.Figure("errors", map[string]int{"total": errs, "faulted_nodes": faulted, "others_in_window": windowed, "others_outside_window": outside})
	r.Check(fmt.Sprintf("no failed request to a non-faulted node outside the window (%s after the fault and the heal)", r.sc.Window),
		outside == 0, "%d requests, %d failed: %d to faulted nodes, %d to others within the window, %d outside%s",
		total, errs, faulted, windowed, outside, exampleList(examples))
}

func exampleList(ex []string) string {
	if len(ex) == 0 {
		return ""
	}
	return " (e.g. " + strings.Join(ex, "; ") + ")"
}

// checkWrites: a final linearizable read through every node, then
// acknowledged writes kept (the final version is at least the highest
// acknowledged, and the kept history shows each acknowledged marker at its
// version) and the whole history linearizable.
func (r *Run) checkWrites() {
	for _, n := range r.Running() {
		r.w.read(r, 9, n)
	}
	hist := r.w.history()
	acked := map[int64]int{}
	var unknown, reads int
	var maxAcked int64
	for _, h := range hist {
		switch {
		case !h.Write:
			reads++
		case h.Unknown:
			unknown++
		default:
			acked[h.Version] = h.Value
			maxAcked = max(maxAcked, h.Version)
		}
	}
	r.Figure("writes", map[string]int{"acked": len(acked), "unknown": unknown, "failed_not_sent": r.w.failed, "reads": reads})
	var final int64 = -1
	lost := []string{}
	for _, n := range r.Running() {
		v, _, err := readDoc(n)
		if err == nil {
			final = max(final, v)
		}
		var histDocs []struct {
			Version int64  `json:"version"`
			Content string `json:"content"`
		}
		if err := getJSON(r.ctx, "http://"+n.Admin+"/v1/config/history", &histDocs); err == nil {
			for _, d := range histDocs {
				if want, ok := acked[d.Version]; ok && markerOf(d.Content) != want {
					lost = append(lost, fmt.Sprintf("%s shows v%d with marker %d, acked %d", n.Name, d.Version, markerOf(d.Content), want))
				}
			}
		}
	}
	r.finalVersion, r.maxAckedVersion = final, maxAcked
	r.Check("acknowledged config writes are never lost", final >= maxAcked && len(lost) == 0,
		"%d acked (highest v%d), %d with unknown outcome, %d refused before sending; final version v%d%s",
		len(acked), maxAcked, unknown, r.w.failed, final, exampleList(lost))
	res := checkLinearizable(r.w.init, hist, 60*time.Second)
	r.Check("config history linearizable (porcupine: versioned register)", res == porcupine.Ok,
		"%s over %d operations (%d writes, %d reads)", res, len(hist), len(hist)-reads, reads)
	r.Figure("history", hist)
}

// poolFDs is what the proxy's upstream pool may keep open to the one
// origin: proxy.PoolConfig.MaxIdlePerPeer (128) idle connections, for 90 s.
// A node that gets a burst of requests (a paused node's backlog once it
// resumes) fills it, by design.
const poolFDs = 128

// idleWorkers is what the proxy keeps of the goroutines that served a
// burst of client connections: proxy's maxIdleWorkers (128) wait for the
// next connection, for good, by design (proxy/server.go connWorker). A
// paused node's backlog once it resumes fills them: pause measured
// 57→186 goroutines, 128 of them idle workers, with fds back to 43.
const idleWorkers = 128

// growth: for each node present from before the fault to its last
// sample, whether that sample stays within 1.5× its highest sample
// before the fault plus 50 goroutines and the proxy's idle workers, and
// plus 30 fds and the upstream pool's cap. It returns the nodes outside
// the bound and a row per node.
func (r *Run) growth() (bad, rows []string) {
	r.samp.mu.Lock()
	defer r.samp.mu.Unlock()
	names := make([]string, 0, len(r.samp.samples))
	for name := range r.samp.samples {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ss := r.samp.samples[name]
		var g0, f0 float64
		for _, s := range ss {
			if s.T < r.faultAt {
				g0, f0 = max(g0, s.Goroutines), max(f0, s.FDs)
			}
		}
		if g0 == 0 || len(ss) == 0 {
			continue
		}
		last := ss[len(ss)-1]
		rows = append(rows, fmt.Sprintf("%s %.0f→%.0f goroutines, %.0f→%.0f fds", name, g0, last.Goroutines, f0, last.FDs))
		if last.Goroutines > 1.5*g0+50+idleWorkers || last.FDs > 1.5*f0+30+poolFDs {
			bad = append(bad, name)
		}
	}
	return bad, rows
}

// checkGrowth checks growth's bound on the last samples, taken once the
// nodes settled (or settleMax passed).
func (r *Run) checkGrowth() {
	bad, rows := r.growth()
	r.Figure("metrics", r.samp.samples)
	r.Check(fmt.Sprintf("goroutines and open fds bounded (last ≤ 1.5 × before the fault + 50 + 128 goroutines, the proxy's idle workers; fds + 30 + 128, the upstream pool's idle cap; back within it at most %s after the heal)", settleMax),
		len(bad) == 0 && len(rows) > 0, "%s; settled %.1f s after the look after the heal%s", strings.Join(rows, "; "), r.settleSecs, exampleList(bad))
}

// finish prints the tally and writes the results.
func (r *Run) finish() int {
	passed, failed := 0, 0
	for _, inv := range r.invs {
		if inv.Pass {
			passed++
		} else {
			failed++
		}
	}
	if err := r.writeResults(passed, failed); err != nil {
		fmt.Fprintln(os.Stderr, "runner: results:", err)
	}
	fmt.Printf("%s: %d passed, %d failed\n", r.sc.Name, passed, failed)
	return failed
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
