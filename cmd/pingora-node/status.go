package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/proxy"
)

func adminURL(s string) string {
	if s == "" {
		s = "http://127.0.0.1:9090"
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	return strings.TrimSuffix(s, "/")
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	return statusCommand("status", args, stdout, stderr, printStatus)
}

func cmdMembers(args []string, stdout, stderr io.Writer) int {
	return statusCommand("members", args, stdout, stderr, printMembers)
}

// statusCommand fetches a node's /status and prints it with print, or raw
// with --json.
func statusCommand(name string, args []string, stdout, stderr io.Writer, print func(io.Writer, *node.Status)) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", os.Getenv("PINGORA_ADMIN"), "admin `URL` of the node [PINGORA_ADMIN] (default http://127.0.0.1:9090)")
	asJSON := fs.Bool("json", false, "print the raw JSON document")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(adminURL(*admin) + "/status")
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node: node unreachable:", err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "pingora-node: status: HTTP %d %v\n", resp.StatusCode, err)
		return 1
	}
	if *asJSON {
		stdout.Write(body)
		return 0
	}
	var st node.Status
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintln(stderr, "pingora-node: status: not a status document:", err)
		return 1
	}
	print(stdout, &st)
	return 0
}

func printStatus(w io.Writer, st *node.Status) {
	n := st.Node
	state := "ready"
	if n.Draining {
		state = "draining"
	} else if !n.Ready {
		state = "not ready"
	}
	fmt.Fprintf(w, "node      %s (%s, %s), %s, up %s\n", n.Name, n.Version, n.GoVersion, state, (time.Duration(n.UptimeSeconds) * time.Second).String())
	if c := st.Config; c != nil {
		fmt.Fprintf(w, "config    version %d %s applied %s from %s\n", c.Version, c.Hash, c.AppliedAt.Format(time.RFC3339), c.Source)
		if c.Error != "" {
			fmt.Fprintf(w, "          last change refused: %s\n", c.Error)
		}
	}
	fmt.Fprintf(w, "proxy     %d active connections, %d routes\n", st.Proxy.ActiveConnections, st.Proxy.Routes)
	if st.Ring != nil {
		fmt.Fprintf(w, "cluster   %d members, ring v%d digest %s\n", len(st.Members), st.Ring.Version, st.Ring.Digest)
	}
	if r := st.Raft; r != nil {
		fmt.Fprintf(w, "raft      %s, leader %s, term %d, commit %d, applied %d, %d voters, %d non-voters\n",
			r.State, r.LeaderID, r.Term, r.CommitIndex, r.AppliedIndex, len(r.Voters), len(r.NonVoters))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nLISTENER\tADDR\tTLS\tH2C")
	for _, l := range st.Listeners {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\n", l.Name, l.Addr, l.TLS, l.H2C)
	}
	fmt.Fprintln(tw, "\nUPSTREAM\tPEER\tWEIGHT\tHEALTH\tIN FLIGHT")
	for _, u := range st.Upstreams {
		for _, p := range u.Peers {
			fmt.Fprintf(tw, "%s (%s, %s)\t%s\t%d\t%s\t%d\n", u.Name, u.Policy, u.Protocol, p.Addr, p.Weight, peerHealth(p), p.InFlight)
		}
	}
	tw.Flush()
}

// cmdPeer is "pingora-node peer enable|disable UPSTREAM ADDR".
func cmdPeer(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "enable" && args[0] != "disable") {
		fmt.Fprintln(stderr, "usage: pingora-node peer enable|disable [--admin URL] [--token T] UPSTREAM ADDR")
		return 2
	}
	action := args[0]
	fs := flag.NewFlagSet("peer "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", os.Getenv("PINGORA_ADMIN"), "admin `URL` of the node [PINGORA_ADMIN] (default http://127.0.0.1:9090)")
	token := fs.String("token", os.Getenv("PINGORA_ADMIN_TOKEN"), "admin token [PINGORA_ADMIN_TOKEN]")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(stderr, "pingora-node peer: want UPSTREAM and ADDR")
		return 2
	}
	u := adminURL(*admin) + "/v1/upstreams/" + url.PathEscape(fs.Arg(0)) + "/peers/" + url.PathEscape(fs.Arg(1)) + "/" + action
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node peer:", err)
		return 2
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node: node unreachable:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		fmt.Fprintf(stderr, "pingora-node peer %s: HTTP %d: %s\n", action, resp.StatusCode, e.Error)
		return 1
	}
	fmt.Fprintf(stdout, "%s %s: %sd\n", fs.Arg(0), fs.Arg(1), action)
	return 0
}

// peerHealth is a one-word verdict with its reason.
func peerHealth(p proxy.PeerStatus) string {
	switch {
	case p.Disabled:
		return "disabled (operator)"
	case p.Healthy:
		return "up"
	case !p.EjectedUntil.IsZero() && p.EjectedUntil.After(time.Now()):
		return "ejected until " + p.EjectedUntil.Format(time.TimeOnly)
	case p.ActiveCheck == "down":
		return "down (active check: " + p.LastError + ")"
	}
	return "down"
}

// printMembers prints the members table and the ring.
func printMembers(w io.Writer, st *node.Status) {
	if st.Ring == nil {
		fmt.Fprintf(w, "node %s does not gossip (no join or gossip_addr): a standalone node\n", st.Node.Name)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tGOSSIP ADDR\tSTATE\tNODE STATE\tRING SHARE\tCONFIG\tHEALTHY PEERS\tVERSION\tSINCE")
	for _, m := range st.Members {
		share := "-"
		if v, ok := st.Ring.Shares[m.Name]; ok {
			share = fmt.Sprintf("%.1f%%", v*100)
		}
		self := ""
		if st.Gossip != nil && m.Name == st.Gossip.Self {
			self = " (self)"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\tv%d\t%d/%d\t%s\t%s\n", m.Name, self, m.Addr, m.State, m.Meta.State, share,
			m.Meta.ConfigVersion, m.Meta.Health.Healthy, m.Meta.Health.Total, m.Meta.Version, m.LastChange.Format(time.TimeOnly))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nring v%d digest %s over %d members\n", st.Ring.Version, st.Ring.Digest, len(st.Ring.Members))
}
