// Command runner is the chaos suite's scenario runner (chaos/run.sh drives
// it). For one scenario it starts a compose cluster of its own (deploy/docker's
// images and compose file, chaos/compose.chaos.yml over it, project
// chaosPID-SCENARIO), runs client load through every node's proxy and a
// config writer and reader through random nodes' admin API, injects the
// fault, heals it, then checks the invariants: no failed request to a
// node that was not faulted outside the stated window, acknowledged
// config writes kept and the history linearizable (porcupine), every node
// agreeing on members, ring and config version within the stated time
// after the heal, goroutines and open fds bounded, and the scenario's own.
// It prints "N passed, M failed", writes DIR/SCENARIO.json, .md and .png
// (the timeline), removes the project and exits 1 on a failure.
//
//	runner [-short] [-profile lan|fast] [-out DIR] SCENARIO
//	runner -list
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	short := flag.Bool("short", false, "shorter phases (CI): 4 s of load before the fault and after the heal instead of 8 s")
	profile := flag.String("profile", "lan", "gossip profile of the nodes: lan or fast (agreement goal 5 s or 2 s)")
	out := flag.String("out", "chaos/results", "`dir` for SCENARIO.json, .md and .png")
	project := flag.String("project", fmt.Sprintf("chaos%d", os.Getpid()), "compose project name `prefix`")
	compose := flag.String("compose", "deploy/docker/docker-compose.yml,chaos/compose.chaos.yml", "compose `files`, comma-separated")
	tokenFile := flag.String("token-file", "deploy/docker/admin.env", "the nodes' admin.env (PINGORA_ADMIN_TOKEN=...)")
	list := flag.Bool("list", false, "list the scenarios")
	flag.Parse()
	if *list {
		for _, s := range scenarios() {
			fmt.Printf("%-16s %s\n", s.Name, s.Title)
		}
		return
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: runner [-short] [-profile lan|fast] [-out DIR] SCENARIO (runner -list)")
		os.Exit(2)
	}
	var sc *Scenario
	for _, s := range scenarios() {
		if s.Name == flag.Arg(0) {
			sc = &s
		}
	}
	if sc == nil {
		fmt.Fprintf(os.Stderr, "runner: no scenario %q (runner -list)\n", flag.Arg(0))
		os.Exit(2)
	}
	if *profile != "lan" && *profile != "fast" {
		fmt.Fprintln(os.Stderr, "runner: -profile is lan or fast")
		os.Exit(2)
	}
	token, err := readToken(*tokenFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "runner:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// A bound on the whole scenario, whatever happens.
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	r := &Run{
		ctx: ctx, sc: sc, profile: *profile, short: *short, out: *out,
		C: &Cluster{Project: *project + "-" + sc.Name, Files: strings.Split(*compose, ","), Token: token,
			Env: []string{"CHAOS_GOSSIP_PROFILE=" + *profile}},
	}
	failed := r.Execute()
	if failed > 0 {
		os.Exit(1)
	}
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the admin token: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PINGORA_ADMIN_TOKEN="); ok && v != "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s has no PINGORA_ADMIN_TOKEN", path)
}
