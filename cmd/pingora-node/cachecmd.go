package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/pingora-go/pingora-go/internal/suggest"
	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/sharedcache"
)

const cacheUsage = `usage: pingora-node cache stats|purge [flags]

  cache stats [ADMIN] [--json]            every node's HTTP cache: objects, bytes, hit ratio, owner calls
  cache purge [URL...] [--prefix P]... [--tag T]... [--admin URL] [--token T] [--json]
                                          drop cached objects on every node, by URL (with all its
                                          variants), URL prefix or surrogate key (Surrogate-Key,
                                          Cache-Tag); prints what each node dropped

Run "pingora-node cache SUBCOMMAND -h" for its flags.
`

var cacheCmds = map[string]command{
	"stats": {name: "cache stats", args: "[ADMIN] [--json]",
		about: "Show the HTTP cache of every node the one at ADMIN sees on its ring: objects and bytes held,\n" +
			"hit ratio over the last minute, calls to key owners in flight, hot copies."},
	"purge": {name: "cache purge", args: "[URL...] [--prefix P]... [--tag T]... [--admin URL] [--token T] [--json]",
		about: "Drop cached objects on every node: each URL with all its Vary variants, every URL under a prefix,\n" +
			"every response tagged with a surrogate key. A URL without a scheme covers http and https.\n" +
			"Prints how many objects each node dropped. An admin write: needs the token off loopback."},
}

// cmdCache runs "cache stats" and "cache purge".
func cmdCache(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, cacheUsage)
		return 2
	}
	if isHelp(args) {
		fmt.Fprint(stdout, cacheUsage)
		return 0
	}
	args = subcommandFirst(args, []string{"purge", "stats"})
	switch args[0] {
	case "stats":
		return cacheStats(args[1:], stdout, stderr)
	case "purge":
		return cachePurge(args[1:], stdout, stderr)
	}
	hint := ""
	if s := suggest.Closest(args[0], []string{"purge", "stats"}); s != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	}
	fmt.Fprintf(stderr, "pingora-node cache: unknown subcommand %q%s\n\n%s", args[0], hint, cacheUsage)
	return 2
}

func cacheStats(args []string, stdout, stderr io.Writer) int {
	cmd := cacheCmds["stats"]
	fs := cmd.newFlags()
	admin, token := adminFlags(fs, "any node")
	asJSON := fs.Bool("json", false, "print the JSON document")
	pos, code, done := cmd.parse(fs, args, stdout, stderr)
	if done {
		return code
	}
	if code, done := cmd.adminArg(fs, pos, admin, stderr); done {
		return code
	}
	base, code, done := cmd.adminBase(fs, stderr, *admin)
	if done {
		return code
	}
	c := &adminClient{base: base, token: *token}
	var res struct {
		Nodes []sharedcache.NodeStats `json:"nodes"`
	}
	raw, err := c.do(http.MethodGet, "/v1/cache/stats", nil, "", &res)
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node cache stats:", err)
		return 1
	}
	if *asJSON {
		stdout.Write(safeJSON(raw))
		return 0
	}
	printable(&res)
	tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tOBJECTS\tBYTES\tCAP\tHIT RATIO (1m)\tLOOKUPS (1m)\tOWNER CALLS\tSERVING\tHOT OBJECTS")
	for _, n := range res.Nodes {
		st := n.Stats
		if st == nil {
			fmt.Fprintf(tw, "%s\terror: %s\n", n.Node, n.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.1f %%\t%d\t%d\t%d\t%d\n", n.Node, st.Local.Objects+st.Hot.Objects,
			humanBytes(st.Local.Bytes+st.Hot.Bytes), humanBytes(st.Local.MaxBytes+st.Hot.MaxBytes),
			100*st.HitRatio, st.Lookups1m, st.OwnerCalls, st.Serving, st.Hot.Objects)
	}
	tw.Flush()
	return 0
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cachePurge(args []string, stdout, stderr io.Writer) int {
	cmd := cacheCmds["purge"]
	fs := cmd.newFlags()
	admin, token := adminFlags(fs, "any node")
	var p sharedcache.Purge
	fs.Var((*listFlag)(&p.Prefixes), "prefix", "purge every URL under `PREFIX` (repeatable)")
	fs.Var((*listFlag)(&p.Tags), "tag", "purge every response tagged `KEY` (repeatable)")
	asJSON := fs.Bool("json", false, "print the JSON answer")
	pos, code, done := cmd.parse(fs, args, stdout, stderr)
	if done {
		return code
	}
	p.URLs = pos
	if err := p.Validate(); err != nil {
		return cmd.usageError(fs, stderr, "%v", strings.TrimPrefix(err.Error(), "sharedcache: "))
	}
	body, _ := json.Marshal(p)
	base, code, done := cmd.adminBase(fs, stderr, *admin)
	if done {
		return code
	}
	c := &adminClient{base: base, token: *token}
	var res node.PurgeResult
	raw, err := c.do(http.MethodPost, "/v1/cache/purge", body, "", &res)
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node cache purge:", err)
		return 1
	}
	if *asJSON {
		stdout.Write(safeJSON(raw))
		return 0
	}
	printable(&res)
	sort.SliceStable(res.Nodes, func(i, j int) bool { return res.Nodes[i].Node < res.Nodes[j].Node })
	failed := 0
	for _, n := range res.Nodes {
		if n.Error != "" {
			failed++
			fmt.Fprintf(stdout, "%s: not purged: %s\n", n.Node, n.Error)
			continue
		}
		fmt.Fprintf(stdout, "%s: dropped %d\n", n.Node, n.Dropped)
	}
	fmt.Fprintf(stdout, "total: dropped %d on %d nodes\n", res.Dropped, len(res.Nodes)-failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// humanBytes prints n in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	const k = 1024
	switch {
	case n >= k*k*k:
		return fmt.Sprintf("%.1f GiB", float64(n)/(k*k*k))
	case n >= k*k:
		return fmt.Sprintf("%.1f MiB", float64(n)/(k*k))
	case n >= k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	}
	return fmt.Sprintf("%d B", n)
}
