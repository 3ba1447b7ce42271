package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pingora-go/pingora-go/internal/suggest"
	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/node/config"
)

const configUsage = `usage:
  pingora-node config get [--admin URL] [--consistent] [--json]
  pingora-node config apply -f FILE [--if-match VERSION] [--allow-empty] [--admin URL] [--token T]
  pingora-node config history [--admin URL]
  pingora-node config rollback VERSION [--allow-empty] [--admin URL] [--token T]

"pingora-node config SUBCOMMAND -h" shows a subcommand's flags.
`

var configCmds = map[string]command{
	"get": {name: "config get", args: "[--admin URL] [--consistent] [--json]",
		about: "Print the cluster config the node applied; --consistent reads it through the raft leader."},
	"apply": {name: "config apply", args: "-f FILE [--if-match VERSION] [--allow-empty] [--admin URL] [--token T]",
		about: "Validate FILE (YAML or JSON) here, then write it as a new version through the node (a follower\n" +
			"forwards to the leader). A document with no routes or no upstreams is refused unless --allow-empty;\n" +
			"one with the same values as the current version writes no new version."},
	"history": {name: "config history", args: "[--admin URL]", about: "List the kept versions (the last 20)."},
	"rollback": {name: "config rollback", args: "VERSION [--allow-empty] [--admin URL] [--token T]",
		about: "Write the content of an earlier VERSION as a new version, only over the version that is current\n" +
			"when the command runs: a write that lands in between is reported and nothing is rolled back."},
}

// configFlags are the flags of the config subcommands; each registers the
// ones it takes.
type configFlags struct {
	admin, token, file, ifMatch string
	consistent, asJSON, empty   bool
}

func (f *configFlags) register(fs *flag.FlagSet, sub string) {
	fs.StringVar(&f.admin, "admin", "", "admin `URL` of any node [PINGORA_ADMIN] (default http://127.0.0.1:9090)")
	switch sub {
	case "get":
		fs.BoolVar(&f.consistent, "consistent", false, "read through the leader (linearizable)")
		fs.BoolVar(&f.asJSON, "json", false, "print the JSON document")
	case "apply", "rollback":
		fs.StringVar(&f.token, "token", "", "admin `token` [PINGORA_ADMIN_TOKEN]")
		fs.BoolVar(&f.empty, "allow-empty", false, "write a document that routes nothing (every request gets 404)")
	}
	if sub == "apply" {
		fs.StringVar(&f.file, "f", "", "cluster config `file` (YAML or JSON) to apply")
		fs.StringVar(&f.ifMatch, "if-match", "", "apply only if the current version is `VERSION`")
	}
}

// cmdConfig reads and writes the replicated cluster config through a
// node's admin API; any node forwards writes to the raft leader.
func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, configUsage)
		return 2
	}
	if isHelp(args) {
		fmt.Fprint(stdout, configUsage)
		return 0
	}
	subs := make([]string, 0, len(configCmds))
	for s := range configCmds {
		subs = append(subs, s)
	}
	sort.Strings(subs)
	args = subcommandFirst(args, subs)
	sub := args[0]
	cmd, ok := configCmds[sub]
	if !ok {
		hint := ""
		if s := suggest.Closest(sub, subs); s != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", s)
		}
		fmt.Fprintf(stderr, "pingora-node config: unknown subcommand %q%s\n\n%s", sub, hint, configUsage)
		return 2
	}
	fs := cmd.newFlags()
	var f configFlags
	f.register(fs, sub)
	pos, code, done := cmd.parse(fs, args[1:], stdout, stderr)
	if done {
		return code
	}
	base, code, done := cmd.adminBase(fs, stderr, f.admin)
	if done {
		return code
	}
	c := &adminClient{base: base, token: f.token}
	switch sub {
	case "get":
		if len(pos) > 0 {
			return cmd.usageError(fs, stderr, "takes no arguments")
		}
		return c.get(&f, stdout, stderr)
	case "apply":
		if len(pos) > 0 || f.file == "" {
			return cmd.usageError(fs, stderr, "wants -f FILE and no other argument")
		}
		return c.applyFile(&f, stdout, stderr)
	case "history":
		if len(pos) > 0 {
			return cmd.usageError(fs, stderr, "takes no arguments")
		}
		return c.history(stdout, stderr)
	}
	if len(pos) != 1 {
		return cmd.usageError(fs, stderr, "wants one VERSION")
	}
	want, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || want < 1 {
		return cmd.usageError(fs, stderr, "VERSION must be a number (see pingora-node config history)")
	}
	return c.rollback(want, f.empty, stdout, stderr)
}

func (c *adminClient) get(f *configFlags, stdout, stderr io.Writer) int {
	path := "/v1/config"
	if f.consistent {
		path += "?consistent=true"
	}
	var doc node.ConfigDoc
	raw, err := c.do("GET", path, nil, "", &doc)
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node config get:", err)
		return 1
	}
	if f.asJSON {
		stdout.Write(safeJSON(raw))
		return 0
	}
	fmt.Fprintf(stderr, "# version %d %s written %s by %s\n", doc.Version, escapeControls(doc.Hash), doc.Time.Format(time.RFC3339), escapeControls(doc.Node))
	io.WriteString(stdout, doc.Content)
	return 0
}

// applyFile validates the file here, so errors name it and its lines, and
// refuses a document that routes nothing before anything is sent.
func (c *adminClient) applyFile(f *configFlags, stdout, stderr io.Writer) int {
	body, err := os.ReadFile(f.file)
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node config apply:", err)
		return 1
	}
	parsed, err := config.ParseNewCluster(f.file, body)
	if err != nil {
		fmt.Fprintf(stderr, "pingora-node config apply: nothing sent:\n%v\n", err)
		return 1
	}
	if why := parsed.RoutesNothing(); why != "" && !f.empty {
		fmt.Fprintf(stderr, "pingora-node config apply: %s: %s; nothing sent (--allow-empty writes it anyway)\n", f.file, why)
		return 1
	}
	doc, err := c.put(body, f.ifMatch, f.empty)
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node config apply:", err)
		return 1
	}
	printWritten(stdout, doc, "")
	return 0
}

func (c *adminClient) history(stdout, stderr io.Writer) int {
	var hist []node.ConfigDoc
	if _, err := c.do("GET", "/v1/config/history", nil, "", &hist); err != nil {
		fmt.Fprintln(stderr, "pingora-node config history:", err)
		return 1
	}
	printable(&hist)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tHASH\tWRITTEN\tON NODE")
	for _, d := range hist {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", d.Version, d.Hash, d.Time.Format(time.RFC3339), d.Node)
	}
	tw.Flush()
	return 0
}

// rollback writes version want's content over the current version, read
// through the leader (a follower's history may lag the leader's, which made
// rollbacks fail with 409 when nothing else was written). A write that
// lands between the read and the write is reported, not overwritten.
func (c *adminClient) rollback(want int64, allowEmpty bool, stdout, stderr io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "pingora-node config rollback: "+format+"\n", a...)
		return 1
	}
	var hist []node.ConfigDoc
	if _, err := c.do("GET", "/v1/config/history", nil, "", &hist); err != nil {
		return fail("reading the history: %v", err)
	}
	var target *node.ConfigDoc
	for i := range hist {
		if hist[i].Version == want {
			target = &hist[i]
		}
	}
	if target == nil {
		if len(hist) == 0 {
			return fail("no config history on this node")
		}
		return fail("version %d is not in the kept history (versions %d to %d)", want, hist[0].Version, hist[len(hist)-1].Version)
	}
	var cur node.ConfigDoc
	if _, err := c.do("GET", "/v1/config?consistent=true", nil, "", &cur); err != nil {
		return fail("reading the current version through the leader: %v", err)
	}
	doc, err := c.put([]byte(target.Content), strconv.FormatInt(cur.Version, 10), allowEmpty)
	var he *httpError
	switch {
	case errors.As(err, &he) && he.Status == http.StatusConflict:
		return fail("version %d was written while this command ran (it read version %d); nothing was rolled back. "+
			"See pingora-node config history, then run it again", he.Current, cur.Version)
	case err != nil:
		return fail("writing the content of version %d: %v", want, err)
	}
	printWritten(stdout, doc, fmt.Sprintf(" (the content of version %d)", want))
	return 0
}

// printWritten reports a PUT's outcome: a new version, or none.
func printWritten(w io.Writer, doc node.ConfigDoc, what string) {
	doc.Hash = escapeControls(doc.Hash)
	if doc.Unchanged {
		fmt.Fprintf(w, "unchanged: version %d %s has the same values%s; no new version written\n", doc.Version, doc.Hash, what)
		return
	}
	fmt.Fprintf(w, "applied: version %d %s%s\n", doc.Version, doc.Hash, what)
}

type adminClient struct{ base, token string }

// maxAnswer bounds an admin answer the CLI reads. The largest is the
// config history: 20 versions of up to 1 MiB each (PUT /v1/config's
// limit), JSON-escaped (a '<' or '&' is written as 6 bytes). It was 4 MiB,
// and the history of 20 versions of 700 KB failed to decode, which broke
// config history and config rollback.
const maxAnswer = 128 << 20

// httpError is a non-200 answer of the admin API.
type httpError struct {
	Status  int
	Msg     string
	Current int64 // current_version of a 409
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Msg) }

// put sends body as a new cluster config version.
func (c *adminClient) put(body []byte, ifMatch string, allowEmpty bool) (node.ConfigDoc, error) {
	path := "/v1/config"
	if allowEmpty {
		path += "?allow_empty=true"
	}
	var doc node.ConfigDoc
	for try := 0; ; try++ {
		_, err := c.send("PUT", path, body, ifMatch, &doc, try > 0)
		var he *httpError
		if try < handoffRetries && errors.As(err, &he) && he.Status == http.StatusServiceUnavailable && strings.Contains(he.Msg, "handing off") {
			// The node's old process answered in the moment of a graceful
			// upgrade between releasing raft and its successor serving:
			// nothing was written, and the successor takes the admin
			// socket within moments. A new connection reaches it.
			time.Sleep(handoffRetryWait)
			continue
		}
		return doc, err
	}
}

// handoffRetries and handoffRetryWait: how often, and after how long, a
// config write answered by a node's old process during a graceful upgrade
// is sent again.
const (
	handoffRetries   = 5
	handoffRetryWait = 200 * time.Millisecond
)

// do sends a request and decodes a 200 answer into out; other statuses
// become an *httpError carrying the node's message.
func (c *adminClient) do(method, path string, body []byte, ifMatch string, out any) ([]byte, error) {
	return c.send(method, path, body, ifMatch, out, false)
}

// send is do, on a connection of its own when fresh.
func (c *adminClient) send(method, path string, body []byte, ifMatch string, out any, fresh bool) ([]byte, error) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Close = fresh
	// Trimmed as the node trims its own: a token read from a file made
	// with echo ends in a newline, which no header may carry.
	if tok := strings.TrimSpace(c.token); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return nil, unreachable(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading the answer of %s %s: %w", method, path, err)
	case len(raw) > maxAnswer:
		return nil, fmt.Errorf("the answer of %s %s is over %d MiB", method, path, maxAnswer>>20)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error   string `json:"error"`
			Current int64  `json:"current_version"`
		}
		json.Unmarshal(raw, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		e.Error = escapeControls(e.Error) // printed: see printable
		if resp.StatusCode == http.StatusUnauthorized {
			// The node's advice is for curl (the header to send); this
			// command's own follows.
			const tokenErr = "missing or wrong admin token"
			if strings.HasPrefix(e.Error, tokenErr+": ") {
				e.Error = tokenErr
			}
			if strings.TrimSpace(c.token) == "" {
				e.Error += " (no token was sent: give the node's admin_token with --token or PINGORA_ADMIN_TOKEN)"
			} else {
				e.Error += " (the token sent, from --token or PINGORA_ADMIN_TOKEN, is not the node's admin_token)"
			}
		}
		return raw, &httpError{Status: resp.StatusCode, Msg: e.Error, Current: e.Current}
	}
	return raw, json.Unmarshal(raw, out)
}
