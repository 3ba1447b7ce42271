package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// baseConfig renders the cluster config the writer puts: deploy/docker's
// seed (one upstream, the origin) with a marker route, plus extra YAML
// (routes first, then top-level sections) for the scenario.
func baseConfig(extraRoutes string, extraTop ...string) func(marker int) string {
	return func(marker int) string {
		return fmt.Sprintf(`upstreams:
  - name: origin
    lb: round_robin
    health_check: {type: http, path: /healthz, interval: 2s}
    peers:
      - addr: origin:8080
routes:
  - host: "*"
    upstream: origin
  - host: "w-%d.chaos"
    upstream: origin
%s%s`, marker, extraRoutes, strings.Join(extraTop, ""))
	}
}

func scenarios() []Scenario {
	return []Scenario{
		{Name: "kill-leader", Title: "kill -9 of the raft leader (docker kill), restart on its data 15 s later",
			Nodes: 3, Window: 3 * time.Second, Hold: 15 * time.Second,
			Inject: func(r *Run) error { return r.kill(true) }, Heal: (*Run).restartKilled},
		{Name: "kill-follower", Title: "kill -9 of a raft follower (docker kill), restart on its data 15 s later",
			Nodes: 3, Window: 3 * time.Second, Hold: 15 * time.Second,
			Inject: func(r *Run) error { return r.kill(false) }, Heal: (*Run).restartKilled},
		{Name: "pause", Title: "docker pause (SIGSTOP) of a node for 30 s, then unpause",
			Nodes: 3, Window: 3 * time.Second, Hold: 30 * time.Second,
			Inject: (*Run).pause, Heal: (*Run).unpause, Check: (*Run).checkPause},
		{Name: "partition", Title: "symmetric partition 2 | 3 of 5 nodes for 20 s (iptables in each node's netns)",
			Nodes: 5, Window: 3 * time.Second, Hold: 20 * time.Second,
			Inject: (*Run).partition, Heal: (*Run).healIptables},
		{Name: "oneway", Title: "one-way partition for 20 s: the leader reaches a follower, the follower cannot reach the leader",
			Nodes: 3, Window: 3 * time.Second, Hold: 20 * time.Second,
			Inject: (*Run).oneway, Heal: (*Run).healIptables},
		{Name: "netem", Title: "30 % loss and 100 ms ± 50 ms delay on the leader's eth0 egress for 20 s (tc netem; without netem in the kernel: the loss only)",
			Nodes: 3, Window: 3 * time.Second, Hold: 20 * time.Second,
			Inject: (*Run).netem, Heal: (*Run).healNetem},
		{Name: "churn", Title: "scale 3 → 7 → 3 one node at a time (leave before each removal)",
			Nodes: 3, Window: 3 * time.Second,
			Inject: (*Run).churn},
		{Name: "upgrade", Title: "rolling graceful upgrade: SIGUSR2 to each node in turn, two rounds",
			Nodes: 3, Window: 0,
			Inject: (*Run).upgrade, Check: (*Run).checkUpgrade},
		{Name: "cache-ratelimit", Title: "owner kill during large cluster-cached responses; global rate limit over-admission during the kill",
			Nodes: 3, Window: 3 * time.Second, Hold: 10 * time.Second,
			Config: cacheConfig, Setup: (*Run).setupCache, Loads: (*Run).limitedLoad,
			Inject: (*Run).killOwnerMidStream, Heal: (*Run).restartKilled, Check: (*Run).checkCacheAndLimit},
	}
}

// pick returns the leader, or a follower, as a node.
func (r *Run) pick(leader bool) (Node, error) {
	nodes := r.Running()
	l := leaderOf(r.ctx, nodes)
	if l == "" {
		return Node{}, errors.New("no raft leader known")
	}
	for _, n := range nodes {
		if (n.Name == l) == leader {
			return n, nil
		}
	}
	return Node{}, errors.New("no such node")
}

// killed is the node kill stopped (for the heal).
func (r *Run) setVictim(n Node) { r.Figure("victim", n.Container+" ("+n.Name+")") }

func (r *Run) victim() (Node, bool) {
	r.mu.Lock()
	v, _ := r.figures["victim"].(string)
	r.mu.Unlock()
	for _, n := range r.Nodes() {
		if strings.HasPrefix(v, n.Container+" ") {
			return n, true
		}
	}
	return Node{}, false
}

func (r *Run) kill(leader bool) error {
	n, err := r.pick(leader)
	if err != nil {
		return err
	}
	r.setVictim(n)
	r.Fault(n.Name, "killed")
	_, err = Docker(r.ctx, 30*time.Second, "kill", "-s", "KILL", n.Container)
	r.Event("docker kill -s KILL %s (%s, leader: %v)", n.Container, n.Name, leader)
	return err
}

func (r *Run) restartKilled() error {
	n, ok := r.victim()
	if !ok {
		return errors.New("no victim")
	}
	_, err := Docker(r.ctx, 60*time.Second, "start", n.Container)
	r.Event("docker start %s", n.Container)
	r.Refresh()
	return err
}

func (r *Run) pause() error {
	nodes := r.Running()
	n := nodes[len(nodes)-1]
	r.setVictim(n)
	r.Fault(n.Name, "paused")
	_, err := Docker(r.ctx, 30*time.Second, "pause", n.Container)
	r.Event("docker pause %s (%s)", n.Container, n.Name)
	if err != nil {
		return err
	}
	// While it is paused: the others mark it dead and the ring moves.
	others := nodes[:len(nodes)-1]
	deadline := time.Now().Add(r.sc.Hold)
	for time.Now().Before(deadline) && r.ctx.Err() == nil {
		ok := true
		for _, o := range others {
			st, err := nodeStatus(r.ctx, o)
			if err != nil || st.Ring == nil || len(st.Ring.Members) != len(others) || contains(st.alive(), n.Name) {
				ok = false
				break
			}
		}
		if ok {
			r.Figure("pause_dead_after", r.Now()-r.faultAt)
			r.Event("the others mark %s dead and their ring has %d members (%.1f s after the pause)", n.Name, len(others), r.Now()-r.faultAt)
			break
		}
		r.Sleep(250 * time.Millisecond)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (r *Run) unpause() error {
	n, ok := r.victim()
	if !ok {
		return errors.New("no victim")
	}
	r.Figure("victim_started_at", n.StartedAt)
	_, err := Docker(r.ctx, 30*time.Second, "unpause", n.Container)
	r.Event("docker unpause %s", n.Container)
	return err
}

func (r *Run) checkPause() {
	d, ok := r.figures["pause_dead_after"].(float64)
	r.Check("while paused: the others mark it dead and the ring moves", ok,
		"%s", map[bool]string{true: fmt.Sprintf("%.1f s after the pause", d), false: "not within the pause"}[ok])
	n, found := r.victim()
	before, _ := r.figures["victim_started_at"].(string)
	st, err := nodeStatus(r.ctx, n)
	r.Check("it rejoins without a restart and runs the cluster's config version",
		found && err == nil && n.StartedAt == before && st.Node.UptimeSeconds > r.sc.Hold.Seconds() && st.Config != nil && st.Config.Version == r.finalVersion,
		"container started at %s (before: %s), uptime %.0f s, config %v (cluster v%d): %v", n.StartedAt, before, st.Node.UptimeSeconds, versionOf(st), r.finalVersion, err)
}

func versionOf(st status) string {
	if st.Config == nil {
		return "none"
	}
	return fmt.Sprintf("v%d", st.Config.Version)
}

// iptables rules added, to delete at the heal: node and rule arguments.
type rule struct {
	node Node
	args []string
}

func (r *Run) addRule(n Node, args ...string) error {
	full := append([]string{"iptables", "-w", "5", "-I"}, args...)
	full = append(full, "-m", "comment", "--comment", r.C.Project)
	if err := NetExec(r.ctx, n, full...); err != nil {
		return err
	}
	r.mu.Lock()
	rules, _ := r.figures["rules"].([]rule)
	r.figures["rules"] = append(rules, rule{n, args})
	r.mu.Unlock()
	return nil
}

func (r *Run) healIptables() error {
	if r.sc.Name != "netem" {
		r.viewsBeforeHeal()
	}
	r.mu.Lock()
	rules, _ := r.figures["rules"].([]rule)
	delete(r.figures, "rules")
	r.mu.Unlock()
	var errs []error
	for _, ru := range rules {
		full := append([]string{"iptables", "-w", "5", "-D"}, ru.args...)
		full = append(full, "-m", "comment", "--comment", r.C.Project)
		errs = append(errs, NetExec(r.ctx, ru.node, full...))
	}
	r.Event("removed %d iptables rules", len(rules))
	return errors.Join(errs...)
}

// viewsBeforeHeal records what each node sees at the end of the fault
// (alive members, ring members, leader): the evidence that it took effect.
func (r *Run) viewsBeforeHeal() {
	var views []string
	for _, n := range r.Running() {
		st, err := nodeStatus(r.ctx, n)
		if err != nil {
			views = append(views, n.Name+": "+err.Error())
			continue
		}
		leader := "none"
		if st.Raft != nil && st.Raft.LeaderID != "" {
			leader = st.Raft.LeaderID
		}
		ring := 0
		if st.Ring != nil {
			ring = len(st.Ring.Members)
		}
		views = append(views, fmt.Sprintf("%s sees %d alive, ring of %d, leader %s, %s", n.Name, len(st.alive()), ring, leader, versionOf(st)))
	}
	r.Event("before the heal: %s", strings.Join(views, "; "))
}

func (r *Run) partition() error {
	nodes := r.Running()
	a, b := nodes[:2], nodes[2:]
	var names []string
	for _, n := range a {
		names = append(names, n.Name)
		r.Fault(n.Name, "minority side")
		for _, o := range b {
			if err := r.addRule(n, "INPUT", "-s", o.IP, "-j", "DROP"); err != nil {
				return err
			}
			if err := r.addRule(n, "OUTPUT", "-d", o.IP, "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	r.Event("partition: %s | the other 3 (iptables DROP both ways in the 2 nodes' namespaces)", strings.Join(names, ","))
	return nil
}

func (r *Run) oneway() error {
	leader, err := r.pick(true)
	if err != nil {
		return err
	}
	follower, err := r.pick(false)
	if err != nil {
		return err
	}
	r.Fault(follower.Name, "cannot reach the leader")
	r.Fault(leader.Name, "hears nothing from one follower")
	if err := r.addRule(leader, "INPUT", "-s", follower.IP, "-j", "DROP"); err != nil {
		return err
	}
	r.Event("one-way: %s (leader) drops every packet from %s: the leader reaches it, it cannot reach the leader", leader.Name, follower.Name)
	return nil
}

// netem puts 30 % loss and 100 ms ± 50 ms delay on the leader's eth0
// egress. Where the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM unset,
// as on the machine of the committed report), it drops 30 % of the egress
// with iptables' statistic match instead, without the delay, and says so.
func (r *Run) netem() error {
	n, err := r.pick(true)
	if err != nil {
		return err
	}
	r.setVictim(n)
	r.Fault(n.Name, "netem")
	err = NetExec(r.ctx, n, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "loss", "30%", "delay", "100ms", "50ms")
	if err == nil {
		r.Figure("netem", "tc netem loss 30% delay 100ms 50ms")
		r.Event("tc netem loss 30%% delay 100ms 50ms on %s (leader) eth0", n.Name)
		return nil
	}
	if !strings.Contains(err.Error(), "qdisc kind is unknown") {
		return err
	}
	r.Figure("netem", "no netem in this kernel: iptables statistic 30% egress loss, no delay")
	r.Event("no netem qdisc in this kernel (%v): 30%% egress loss with iptables statistic instead, no delay", err)
	return r.addRule(n, "OUTPUT", "-o", "eth0", "-m", "statistic", "--mode", "random", "--probability", "0.3", "-j", "DROP")
}

func (r *Run) healNetem() error {
	r.viewsBeforeHeal()
	if v, _ := r.figures["netem"].(string); !strings.HasPrefix(v, "tc") {
		return r.healIptables()
	}
	n, ok := r.victim()
	if !ok {
		return errors.New("no victim")
	}
	err := NetExec(r.ctx, n, "tc", "qdisc", "del", "dev", "eth0", "root")
	r.Event("tc qdisc del on %s", n.Name)
	return err
}

// churn grows the cluster to 7 one node at a time, each time waiting until
// the nodes agree, then shrinks it to 3 the same way, each removed node
// leaving first (as deploy/docker/scale.sh does).
func (r *Run) churn() error {
	var steps []map[string]any
	step := func(n int, what string, f func() error) error {
		t0 := r.Now()
		if err := f(); err != nil {
			return err
		}
		secs, why := r.WaitAgree(90 * time.Second)
		r.Event("%s: %d nodes agree %.1f s after the step (%s)", what, n, secs, why)
		steps = append(steps, map[string]any{"nodes": n, "what": what, "agree_seconds": secs, "step_seconds": r.Now() - t0})
		if secs < 0 {
			return fmt.Errorf("%s: %d nodes did not agree within 90 s: %s", what, n, why)
		}
		return nil
	}
	defer func() { r.Figure("churn_steps", steps) }()
	for n := 4; n <= 7; n++ {
		// A new node is faulted from the step's start until the nodes
		// agree: until then it may answer 404 (no config yet, /readyz
		// 503), as a load balancer probing /readyz would not see.
		t0, added := r.Now(), ""
		err := step(n, fmt.Sprintf("scale up to %d", n), func() error {
			if err := r.C.Scale(r.ctx, n); err != nil {
				return err
			}
			r.Refresh()
			for _, x := range r.Nodes() {
				if x.Number == n {
					added = x.Name
				}
			}
			return nil
		})
		r.FaultUntil(added, "joining", t0, r.Now())
		if err != nil {
			return err
		}
	}
	for n := 6; n >= 3; n-- {
		err := step(n, fmt.Sprintf("scale down to %d", n), func() error { return r.removeLast(n) })
		if err != nil {
			return err
		}
	}
	return nil
}

// removeLast makes the highest-numbered node leave, waits until it exits,
// then lets compose remove it and force-leaves it on a remaining node.
func (r *Run) removeLast(n int) error {
	nodes := r.Nodes()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Number < nodes[j].Number })
	last := nodes[len(nodes)-1]
	r.FaultUntil(last.Name, "leaving", r.Now(), 1e9)
	if _, err := Docker(r.ctx, 90*time.Second, "exec", last.Container, "/pingora-node", "leave"); err != nil {
		r.Event("leave %s: %v", last.Name, err)
	}
	Docker(r.ctx, 60*time.Second, "wait", last.Container)
	if err := r.C.Scale(r.ctx, n); err != nil {
		return err
	}
	Docker(r.ctx, 30*time.Second, "exec", nodes[0].Container, "/pingora-node", "force-leave", last.Name)
	return r.Refresh()
}

// upgrade sends SIGUSR2 to each node in turn (deploy/systemd's
// ExecReload): the node starts its binary again, which takes the
// listeners over, and the old process drains and exits (as PID 1 of a
// container it stays as init). It waits until the node answers from a
// process started after the signal (its /status uptime) before the next.
func (r *Run) upgrade() error {
	var outcomes []string
	// Two rounds: the second upgrades processes that are successors
	// themselves (in a container: children of the first process, which
	// stays as init and forwards the signal).
	var order []Node
	for round := 0; round < 2; round++ {
		order = append(order, r.Running()...)
	}
	for _, n := range order {
		t0 := r.Now()
		if _, err := Docker(r.ctx, 10*time.Second, "kill", "-s", "USR2", n.Container); err != nil {
			return err
		}
		r.Event("docker kill -s USR2 %s (%s)", n.Container, n.Name)
		outcome := "no new process within 60 s"
		for r.Now()-t0 < 60 && r.ctx.Err() == nil {
			r.Sleep(250 * time.Millisecond)
			r.Refresh()
			cur, _ := r.ByName(n.Name)
			if !cur.Running {
				outcome = "the container stopped"
				r.FaultUntil(n.Name, "container stopped after SIGUSR2", t0, 1e9)
				break
			}
			st, err := nodeStatus(r.ctx, cur)
			if err == nil && st.Node.Ready && st.Node.UptimeSeconds < r.Now()-t0 {
				top, _ := Docker(r.ctx, 10*time.Second, "top", cur.Container, "-o", "pid")
				outcome = fmt.Sprintf("handed off: a new process serves (uptime %.1f s); pids in the container: %s", st.Node.UptimeSeconds, strings.Join(strings.Fields(top)[1:], ","))
				break
			}
		}
		r.Event("%s: %s (%.1f s)", n.Name, outcome, r.Now()-t0)
		outcomes = append(outcomes, n.Name+": "+outcome)
		if strings.HasPrefix(outcome, "the container stopped") {
			// Put it back (docker start: same data), so that the rest of
			// the scenario runs on a whole cluster.
			Docker(r.ctx, 60*time.Second, "start", n.Container)
			r.Event("docker start %s", n.Container)
		}
		if secs, why := r.WaitAgree(60 * time.Second); secs < 0 {
			r.Event("no agreement after %s's upgrade: %s", n.Name, why)
		}
	}
	r.Figure("upgrade_outcomes", outcomes)
	return nil
}

func (r *Run) checkUpgrade() {
	outcomes, _ := r.figures["upgrade_outcomes"].([]string)
	ok := len(outcomes) == 2*r.sc.Nodes
	for _, o := range outcomes {
		ok = ok && strings.Contains(o, "handed off")
	}
	r.Check("every node hands off to a new process twice and its container keeps running", ok, "%s", strings.Join(outcomes, "; "))
	// docker stop (SIGTERM to the container's first process) still stops
	// the node that serves, at once and cleanly.
	nodes := r.Running()
	if len(nodes) == 0 {
		return
	}
	n := nodes[len(nodes)-1]
	t0 := time.Now()
	_, err := Docker(r.ctx, 60*time.Second, "stop", "-t", "45", n.Container)
	took := time.Since(t0).Seconds()
	code, _ := Docker(r.ctx, 10*time.Second, "inspect", "-f", "{{.State.ExitCode}}", n.Container)
	r.Check("after the upgrades docker stop ends the container within the grace period, exit 0",
		err == nil && took < 40 && strings.TrimSpace(code) == "0", "%s stopped in %.1f s, exit code %s %v", n.Name, took, strings.TrimSpace(code), errOrNil(err))
}

func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// The cluster cache and global rate limit scenario's config: /big/ is a
// cluster-cached route (shared: true), /limited/ has a global limit of
// limitL requests per second on the path.
const limitL, limitT, limitP = 100, 0.05, 1.0

var cacheConfig = baseConfig(`  - host: "*"
    path_prefix: /big/
    upstream: origin
    cache: {enabled: true, shared: true, max_object_bytes: 33554432}
`, `rate_limits:
  - name: chaos-global
    match: {path_prefix: /limited/}
    key: path
    limit: 100
    period: 1s
    algorithm: sliding_window
    scope: global
`)

func (r *Run) setupCache() error {
	nodes := r.Running()
	w := &writer{base: cacheConfig, token: r.C.Token}
	w.write(r, 0, nodes[0], 0)
	h := w.history()
	if len(h) != 1 || h[0].Unknown {
		return fmt.Errorf("writing the cache and rate limit config: %+v (refused: %d)", h, w.failed)
	}
	secs, why := r.WaitAgree(60 * time.Second)
	if secs < 0 {
		return fmt.Errorf("no agreement on the cache config: %s", why)
	}
	r.Event("cluster-cached route /big/ and global limit %d/s on /limited/ in v%d", limitL, h[0].Version)
	return nil
}

// limitedLoad offers twice the global limit on one key, spread over the
// nodes; 429 is an answer, not an error.
func (r *Run) limitedLoad() []*load {
	return []*load{{kind: "limited", rate: 2 * limitL, maxInFlight: 100,
		path: func(int) string { return "/limited/k" },
		ok:   func(status int, body []byte) bool { return status == 429 || originOK(status, body) }}}
}
