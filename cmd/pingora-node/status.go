package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pingora-go/pingora-go/internal/suggest"
	"github.com/pingora-go/pingora-go/membership"
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

var (
	statusCmd = command{name: "status", args: "[ADMIN] [--json]",
		about: "Show a node's status: readiness, config version, raft and its health, listeners, upstreams.\n" +
			"ADMIN is the node's admin address, host:port or URL (also --admin; default http://127.0.0.1:9090).\n" +
			"Exit code 1 when the node is unreachable."}
	membersCmd = command{name: "members", args: "[ADMIN] [--json]",
		about: "List the cluster members a node sees: gossip state, node state, raft role, ring share, config version.\n" +
			"ADMIN is the node's admin address, host:port or URL (also --admin; default http://127.0.0.1:9090)."}
)

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	return statusCommand(statusCmd, args, stdout, stderr, printStatus)
}

func cmdMembers(args []string, stdout, stderr io.Writer) int {
	return statusCommand(membersCmd, args, stdout, stderr, func(w io.Writer, st *node.Status, _ string) { printMembers(w, st) })
}

// statusCommand fetches a node's /status and prints it with print, or raw
// with --json. The admin address is --admin or the one argument.
func statusCommand(cmd command, args []string, stdout, stderr io.Writer, print func(io.Writer, *node.Status, string)) int {
	fs := cmd.newFlags()
	admin := fs.String("admin", "", "admin `URL` of the node [PINGORA_ADMIN] (default http://127.0.0.1:9090)")
	asJSON := fs.Bool("json", false, "print the raw JSON document")
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
	// The token lets the node show what it shows only to admins (a rate
	// limit's busiest keys); it goes to this address only, never to one a
	// member gossips (raftHealth).
	body, err := fetchStatus(base, os.Getenv("PINGORA_ADMIN_TOKEN"))
	if err != nil {
		fmt.Fprintf(stderr, "pingora-node %s: %v\n", cmd.name, err)
		return 1
	}
	if *asJSON {
		stdout.Write(safeJSON(body))
		return 0
	}
	var st node.Status
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintf(stderr, "pingora-node %s: %s/status is not a status document: %v\n", cmd.name, base, err)
		return 1
	}
	printable(&st)
	print(stdout, &st, base)
	return 0
}

// fetchStatus GETs base/status, with the admin token when it is not "".
func fetchStatus(base, token string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/status", nil)
	if err != nil {
		return nil, err
	}
	if tok := strings.TrimSpace(token); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return nil, unreachable(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s/status: HTTP 404 (is this a node's admin address? admin_addr, port 9090 by default; a proxy listener answers 404)", base)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s/status: HTTP %d", base, resp.StatusCode)
	case err != nil:
		return nil, fmt.Errorf("%s/status: %v", base, err)
	}
	var probe map[string]json.RawMessage
	if json.Unmarshal(body, &probe) != nil || probe["node"] == nil {
		start := body[:min(len(body), 40)]
		return nil, fmt.Errorf("%s/status answered HTTP 200 with no node status (Content-Type %q, body %q): is this a node's admin address? "+
			"admin_addr, port 9090 by default; a proxy listener's route answers what its upstream does", base, resp.Header.Get("Content-Type"), printableBytes(start))
	}
	return body, nil
}

// printableBytes is b with every byte outside printable ASCII as '.',
// for an error that quotes what a stranger answered.
func printableBytes(b []byte) string {
	out := []byte(string(b))
	for i, c := range out {
		if c < 0x20 || c > 0x7e {
			out[i] = '.'
		}
	}
	return string(out)
}

// lastContact says how long ago the leader last reached an unhealthy
// server. The leader counts from its first failed heartbeat to it, so
// "0s" means none is recorded (a leader elected a moment ago while the
// old one was cut off: status said "voter n1 (last contact 0s; ...)" of a
// server it had never reached); autopilot also goes by gossip, term and
// log index.
func lastContact(d string) string {
	if d == "" || d == "0s" {
		return "no failed heartbeat to it recorded yet"
	}
	return "last contact " + d
}

// removeAt says when the leader takes a server that is down out of raft,
// and how to do it at once, or "".
func removeAt(at time.Time, id string) string {
	if at.IsZero() {
		return ""
	}
	return fmt.Sprintf("; down: out of raft at %s unless it returns, or now with force-leave %s", at.Local().Format("15:04:05"), id)
}

func printStatus(w io.Writer, st *node.Status, _ string) {
	n := st.Node
	state := "ready"
	if n.Draining {
		state = "draining"
	} else if !n.Ready {
		state = "NOT READY"
		if n.NotReady != "" {
			state += " (" + n.NotReady + ")"
		}
	} else if n.ReadyNote != "" {
		state += " (" + n.ReadyNote + ")"
	}
	build := n.Version
	if n.Commit != "" {
		build += " commit " + n.Commit
	}
	fmt.Fprintf(w, "node      %s (%s, %s), %s, up %s\n", n.Name, build, n.GoVersion, state, (time.Duration(n.UptimeSeconds) * time.Second).String())
	if c := st.Config; c != nil {
		fmt.Fprintf(w, "config    version %d %s applied %s from %s\n", c.Version, c.Hash, c.AppliedAt.Format(time.RFC3339), c.Source)
		if c.Error != "" {
			fmt.Fprintf(w, "          last change refused: %s\n", c.Error)
		}
	}
	if r := n.LastReload; r != nil {
		line := fmt.Sprintf("reload    %s at %s", strings.ToUpper(strings.ReplaceAll(r.Result, "_", " ")), r.At.Local().Format("15:04:05"))
		if r.Result == "applied" {
			line = fmt.Sprintf("reload    applied at %s", r.At.Local().Format("15:04:05"))
		}
		if r.Error != "" {
			line += ", running config kept: " + r.Error
		}
		fmt.Fprintln(w, line)
		if r.Warning != "" {
			fmt.Fprintf(w, "          %s\n", r.Warning)
		}
	}
	fmt.Fprintf(w, "proxy     %d active connections, %d routes\n", st.Proxy.ActiveConnections, st.Proxy.Routes)
	if c := st.Cache; c != nil {
		printCache(w, c)
	}
	if st.Ring != nil {
		fmt.Fprintf(w, "cluster   %d members%s, ring v%d digest %s\n", len(st.Members), memberStates(st.Members), st.Ring.Version, st.Ring.Digest)
	}
	if g := st.Gossip; g != nil {
		printGossip(w, g)
	}
	if r := st.Raft; r != nil {
		leader := r.LeaderID
		if leader == "" {
			leader = "(none)" // not a node name: names have no parentheses
		}
		fmt.Fprintf(w, "raft      %s, leader %s, term %d, commit %d, applied %d, %s, %s\n",
			r.State, leader, r.Term, r.CommitIndex, r.AppliedIndex, plural(len(r.Voters), "voter"), plural(len(r.NonVoters), "non-voter"))
		fmt.Fprintf(w, "          %s\n", raftHealth(st))
		if r.Recovering {
			fmt.Fprintf(w, "          recovering: started without raft state (a new node, or a lost data_dir); not voting until it has caught up with the leader\n")
		}
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

// printCache prints the cache's fill and hit ratio, and what an upgrade's
// successor inherited: a successor that starts empty sends every URL back
// to the origins, which an operator should see without reading /status.
func printCache(w io.Writer, c *node.CacheStatus) {
	line := fmt.Sprintf("cache     %d objects, %s of %s", c.Objects, humanBytes(c.Bytes), humanBytes(c.MaxBytes))
	if c.Lookups > 0 {
		line += fmt.Sprintf(", hit ratio %.2f over %d lookups in the last minute", c.HitRatio, c.Lookups)
	}
	fmt.Fprintln(w, line)
	in := c.Inherited
	if in == nil {
		return
	}
	line = fmt.Sprintf("          inherited from the previous process: %d objects (%s)", in.Objects, humanBytes(in.Bytes))
	switch in.State {
	case "receiving":
		line += fmt.Sprintf(", receiving for %.1f s", in.Seconds)
	case "done":
		line += fmt.Sprintf(" in %.1f s", in.Seconds)
	default:
		line += fmt.Sprintf(", stream %s after %.1f s (what arrived is kept)", strings.ToUpper(in.State), in.Seconds)
	}
	if in.Skipped > 0 {
		line += fmt.Sprintf(", %d skipped", in.Skipped)
	}
	if in.Error != "" {
		line += ": " + in.Error
	}
	fmt.Fprintln(w, line)
}

var peerCmd = command{name: "peer", args: "enable|disable UPSTREAM ADDR [--admin URL] [--token T]",
	about: "Take a peer of an upstream group out of rotation on one node (disable), or put it back (enable)."}

// printGossip prints how joining the seeds goes (a join that keeps
// failing must not hide behind "ready") and which peers lack this node's
// latest metadata.
// plural is "1 voter", "0 voters", "3 voters".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// memberStates is " (2 alive, 1 dead)" when some members are not alive,
// in a fixed order; "" when all are: "3 members" alone read as a healthy
// cluster of three with two of them dead.
func memberStates(ms []membership.Member) string {
	counts := map[membership.State]int{}
	for _, m := range ms {
		counts[m.State]++
	}
	if counts[membership.Alive] == len(ms) {
		return ""
	}
	var parts []string
	for _, s := range []membership.State{membership.Alive, membership.Suspect, membership.Dead, membership.Left} {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
			delete(counts, s)
		}
	}
	for s, n := range counts { // a state this build does not know
		parts = append(parts, fmt.Sprintf("%d %s", n, s))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func printGossip(w io.Writer, g *node.GossipStatus) {
	j := g.Join
	if len(j.Seeds) > 0 {
		at := func(t time.Time) string { return t.Local().Format(time.TimeOnly) }
		switch {
		case !j.Joined && j.LastAttempt.IsZero():
			// The first attempt has not ended: it waits on seeds that do
			// not answer (a node started cut off from them).
			fmt.Fprintf(w, "join      NOT JOINED yet: seeds %s, first attempt under way\n", strings.Join(j.Seeds, ","))
		case !j.Joined:
			fmt.Fprintf(w, "join      NOT JOINED: seeds %s, %d failed attempts, last at %s: %s\n", strings.Join(j.Seeds, ","), j.Failures, at(j.LastAttempt), j.LastError)
			if !j.NextAttempt.IsZero() {
				fmt.Fprintf(w, "          next attempt at %s\n", at(j.NextAttempt))
			}
		case j.LastError != "":
			fmt.Fprintf(w, "join      joined at %s (seeds %s); re-joining %s failed at %s: %s\n", at(j.LastSuccess), strings.Join(j.Seeds, ","), strings.Join(j.Tried, ","), at(j.LastAttempt), j.LastError)
		case j.Note != "":
			fmt.Fprintf(w, "join      joined at %s (seeds %s): %s\n", at(j.LastSuccess), strings.Join(j.Seeds, ","), j.Note)
		default:
			fmt.Fprintf(w, "join      joined at %s (seeds %s)\n", at(j.LastSuccess), strings.Join(j.Seeds, ","))
		}
	}
	if len(g.MetaPending) > 0 {
		fmt.Fprintf(w, "gossip    latest metadata not yet acknowledged by %s\n", strings.Join(g.MetaPending, ", "))
	}
}

// cmdPeer is "pingora-node peer enable|disable UPSTREAM ADDR".
func cmdPeer(args []string, stdout, stderr io.Writer) int {
	fs := peerCmd.newFlags()
	admin := fs.String("admin", "", "admin `URL` of the node [PINGORA_ADMIN] (default http://127.0.0.1:9090)")
	token := fs.String("token", "", "admin `token` [PINGORA_ADMIN_TOKEN]")
	pos, code, done := peerCmd.parse(fs, args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) == 0 || (pos[0] != "enable" && pos[0] != "disable") {
		if len(pos) > 0 {
			if s := suggest.Closest(pos[0], []string{"disable", "enable"}); s != "" {
				return peerCmd.usageError(fs, stderr, "unknown subcommand %q (did you mean %q?)", pos[0], s)
			}
		}
		return peerCmd.usageError(fs, stderr, "want enable or disable")
	}
	action := pos[0]
	if len(pos) != 3 {
		return peerCmd.usageError(fs, stderr, "want UPSTREAM and ADDR after %s", action)
	}
	base, code, done := peerCmd.adminBase(fs, stderr, *admin)
	if done {
		return code
	}
	c := &adminClient{base: base, token: *token}
	var out struct{}
	path := "/v1/upstreams/" + url.PathEscape(pos[1]) + "/peers/" + url.PathEscape(pos[2]) + "/" + action
	if _, err := c.do(http.MethodPost, path, nil, "", &out); err != nil {
		fmt.Fprintf(stderr, "pingora-node peer %s: %v\n", action, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s %s: %sd\n", pos[1], pos[2], action)
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

// clusterPortHint is said beside "no leader known" when gossip shows
// other members alive: raft reaches this node at another port (the
// cluster port, or raft_addr), which a firewall that lets gossip through
// may close; the leader's log names its failures to reach it.
func clusterPortHint(st *node.Status) string {
	if h := quorumHint(st); h != "" {
		return h
	}
	alive, self := 0, ""
	for _, m := range st.Members {
		switch {
		case m.Name == st.Node.Name:
			self = m.Meta.Addrs.Raft
		case m.State == membership.Alive || m.State == membership.Suspect:
			alive++
		}
	}
	if alive == 0 || self == "" {
		return ""
	}
	return fmt.Sprintf("; gossip sees %d other member(s) alive: if this lasts, check that they reach this node's raft address %s (TCP, "+
		"the cluster port; the leader's log names its failures to reach it)", alive, self)
}

// quorumHint says, when fewer than a quorum of the voters this node knows
// are alive in gossip, which are not: then no network fix elects a leader,
// only their return (with 2 of 4 voters killed, the cluster-port hint sent
// the operator looking for a network fault).
func quorumHint(st *node.Status) string {
	voters := st.Raft.Voters
	if len(voters) == 0 {
		return ""
	}
	state := make(map[string]membership.State, len(st.Members))
	for _, m := range st.Members {
		state[m.Name] = m.State
	}
	var down []string
	for _, v := range voters {
		if s, ok := state[v.ID]; v.ID != st.Node.Name && (!ok || s != membership.Alive && s != membership.Suspect) {
			down = append(down, v.ID)
		}
	}
	alive, quorum := len(voters)-len(down), len(voters)/2+1
	if alive >= quorum {
		return ""
	}
	head := fmt.Sprintf("; %d of %d voters alive in gossip (not alive: %s); a quorum needs %d: ", alive, len(voters), strings.Join(down, ", "), quorum)
	const restart = "start enough of them again on their data_dir (a voter with a lost data_dir does not vote until a leader has caught it up)"
	if cutOff(st, state, down) {
		return head + "this node sees no other member alive, so it may be the one cut off: if the others run " +
			"(status on one of them shows its leader), check this node's network to them (gossip, TCP and UDP, and the cluster port, " +
			"both ways); if they are down, " + restart
	}
	return head + restart
}

// cutOff reports whether this node sees no other member alive while some
// of the voters it misses failed (rather than left): as likely a node cut
// off from the rest (a partition, a host firewall, a link down) as the rest
// down. A node cut off from a 4-node cluster was told to start the three
// others again, which were running and had a leader.
func cutOff(st *node.Status, state map[string]membership.State, down []string) bool {
	for _, m := range st.Members {
		if m.Name != st.Node.Name && (m.State == membership.Alive || m.State == membership.Suspect) {
			return false
		}
	}
	for _, id := range down {
		if state[id] == membership.Dead {
			return true
		}
	}
	return false
}

// raftHealth says whether raft is healthy. Autopilot's verdict lives on
// the leader, so on a follower it asks the leader's admin address, as
// gossiped.
func raftHealth(st *node.Status) string {
	r := st.Raft
	if r.LeaderID == "" {
		return "UNHEALTHY: no leader known (no quorum, or this node is cut off from it: config writes through this node fail; " +
			"it serves its last config)" + clusterPortHint(st)
	}
	src := ""
	if r.Healthy == nil && r.LeaderID == st.Node.Name && r.State == "Leader" {
		return "health not rated yet: this node became the leader a moment ago (autopilot rates the servers within a reconcile round)"
	}
	if r.Healthy == nil {
		admin := ""
		for _, m := range st.Members {
			if m.Name == r.LeaderID {
				admin = m.Meta.Addrs.Admin
			}
		}
		if admin == "" {
			return "health unknown: the leader's admin address is not known here"
		}
		// The address is as gossiped: host:port, or it is not asked (a
		// path or query would make this command GET whatever it names).
		if _, _, err := net.SplitHostPort(admin); err != nil || strings.ContainsAny(admin, "/?#@") {
			return fmt.Sprintf("health unknown: the leader %s gossips an admin address that is not host:port (%q)", r.LeaderID, admin)
		}
		body, err := fetchStatus(adminURL(admin), "")
		var ls node.Status
		if err == nil {
			err = json.Unmarshal(body, &ls)
			printable(&ls)
		}
		if err == nil && ls.Raft != nil && ls.Raft.Healthy == nil && ls.Raft.State == "Leader" {
			return fmt.Sprintf("health not rated yet: %s became the leader a moment ago (autopilot rates the servers within a reconcile round)", r.LeaderID)
		}
		if err != nil || ls.Raft == nil || ls.Raft.Healthy == nil {
			return fmt.Sprintf("health unknown: asking the leader %s at %s: %v", r.LeaderID, admin, err)
		}
		r, src = ls.Raft, " (as the leader "+r.LeaderID+" sees it)"
	}
	var bad []string
	for _, p := range r.Voters {
		if p.Health == "unhealthy" {
			bad = append(bad, fmt.Sprintf("voter %s (%s%s)", p.ID, lastContact(p.LastContact), removeAt(p.RemoveAt, p.ID)))
		}
	}
	for _, p := range r.NonVoters {
		if p.Health == "unhealthy" {
			bad = append(bad, fmt.Sprintf("non-voter %s (%s%s)", p.ID, lastContact(p.LastContact), removeAt(p.RemoveAt, p.ID)))
		}
	}
	tol := 0
	if r.FailureTolerance != nil {
		tol = *r.FailureTolerance
	}
	if *r.Healthy {
		return fmt.Sprintf("healthy, failure tolerance %d%s", tol, src)
	}
	return fmt.Sprintf("UNHEALTHY%s: failure tolerance %d; unhealthy: %s", src, tol, strings.Join(bad, ", "))
}

// raftRole is a member's place in the raft configuration the node sees:
// leader, voter, non-voter or none ("-" when the node does not run raft).
func raftRole(st *node.Status, name string) string {
	r := st.Raft
	if r == nil {
		return "-"
	}
	if name == r.LeaderID {
		return "leader"
	}
	for _, p := range r.Voters {
		if p.ID == name {
			return "voter"
		}
	}
	for _, p := range r.NonVoters {
		if p.ID == name {
			return "non-voter"
		}
	}
	return "none"
}

// memberNodeState is a member's NODE STATE column: what it gossips while
// it is alive or suspect, "-" once it is dead or left (its last word,
// often "ready", no longer says anything), as the cluster page shows it.
func memberNodeState(m membership.Member) string {
	if (m.State != membership.Alive && m.State != membership.Suspect) || m.Meta.State == "" {
		return "-"
	}
	return string(m.Meta.State)
}

// printMembers prints the members table and the ring.
func printMembers(w io.Writer, st *node.Status) {
	if st.Ring == nil {
		fmt.Fprintf(w, "node %s does not gossip (no join or gossip_addr): a standalone node\n", st.Node.Name)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tGOSSIP ADDR\tSTATE\tNODE STATE\tRAFT\tRING SHARE\tCONFIG\tHEALTHY PEERS\tVERSION\tSINCE")
	for _, m := range st.Members {
		share := "-"
		if v, ok := st.Ring.Shares[m.Name]; ok {
			share = fmt.Sprintf("%.1f%%", v*100)
		}
		self := ""
		if st.Gossip != nil && m.Name == st.Gossip.Self {
			self = " (self)"
		}
		role := raftRole(st, m.Name)
		if m.Meta.RaftRecovering && (m.State == membership.Alive || m.State == membership.Suspect) {
			role += ",recovering" // started without raft state, not caught up: it does not vote
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\tv%d\t%d/%d\t%s\t%s\n", m.Name, self, m.Addr, m.State, memberNodeState(m), role, share,
			m.Meta.ConfigVersion, m.Meta.Health.Healthy, m.Meta.Health.Total, m.Meta.Version, m.LastChange.Format(time.TimeOnly))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nring v%d digest %s over %d members\n", st.Ring.Version, st.Ring.Digest, len(st.Ring.Members))
}

// unreachable wraps err, a request to a node's admin API that got no
// HTTP answer. When something took the connection and closed or reset
// it without answering, it is likely not an admin port: the gossip or
// cluster port (given as ADMIN by mistake) close what is not theirs.
func unreachable(err error) error {
	s := err.Error()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		strings.HasSuffix(s, ": EOF") || strings.Contains(s, "malformed HTTP response") {
		return fmt.Errorf("node unreachable: %w (the address took the connection but did not answer HTTP: "+
			"is it a node's admin address? admin_addr, port 9090 by default, not its gossip port (7946) or cluster port (7947))", err)
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("node unreachable: %w (nothing listens there: is the node running, and is this its admin_addr? "+
			"port 9090 by default; an admin_addr on loopback, as the default 127.0.0.1:9090, answers only on the node's own host)", err)
	case strings.Contains(s, "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("node unreachable: %w (the admin API speaks plain HTTP: give the address as host:port or http://host:port)", err)
	}
	return fmt.Errorf("node unreachable: %w", err)
}
