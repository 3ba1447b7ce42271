package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/pingora-go/pingora-go/node"
)

var limitsCmd = command{name: "limits", args: "[ADMIN] [--json]",
	about: "Show a node's rate limits: each rule (scope, key, limit), the keys it tracks, its decisions, and for a\n" +
		"global rule its busiest keys with their global count, owner and this node's lease.\n" +
		"ADMIN is the node's admin address, host:port or URL (also --admin; default http://127.0.0.1:9090).\n" +
		"--json prints the node's /status document; the rules are under rate_limits."}

func cmdLimits(args []string, stdout, stderr io.Writer) int {
	return statusCommand(limitsCmd, args, stdout, stderr, func(w io.Writer, st *node.Status, _ string) { printLimits(w, st) })
}

// printLimits writes the rate_limits section of a status document.
func printLimits(w io.Writer, st *node.Status) {
	if st.RateLimits == nil || len(st.RateLimits.Rules) == 0 {
		fmt.Fprintf(w, "node %s has no rate limits (the cluster config's rate_limits is empty)\n", st.Node.Name)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tSCOPE\tALGORITHM\tKEY\tLIMIT\tKEYS\tOWNED\tALLOWED\tDENIED\tDELAYED\tFALLBACK")
	for _, r := range st.RateLimits.Rules {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%s\t%d\t%d\t%d\t%d\t%d\t%d\n", r.Name, r.Scope, r.Algorithm, r.Key, r.Limit, period(r.Period),
			r.Keys, r.Owned, r.Allowed, r.Denied, r.Delayed, r.Fallback)
	}
	tw.Flush()
	for _, r := range st.RateLimits.Rules {
		if len(r.Top) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s: busiest keys\n", r.Name)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tGLOBAL COUNT\tOWNER\tLEASE\tMODE")
		for _, k := range r.Top {
			mode := "global"
			if k.Fallback {
				mode = "local share (owner out of reach)"
			}
			fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%d\t%s\n", k.Key, k.Count, r.Limit, k.Owner, k.Lease, mode)
		}
		tw.Flush()
	}
}

// period renders a rule's period compactly: "1s", "1m0s" as "1m".
func period(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
