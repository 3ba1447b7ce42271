package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/pingora-go/pingora-go/node"
)

var (
	leaveCmd = command{name: "leave", args: "[ADMIN] [--token T]",
		about: "The node at ADMIN leaves the cluster for good, as Consul's leave: it hands raft leadership over,\n" +
			"the leader takes it out of raft, then it stops, leaving gossip, and its process exits 0.\n" +
			"A stop with SIGTERM instead keeps it a raft voter, so that it returns as one.\n" +
			"ADMIN is the node's admin address, host:port or URL (also --admin; default http://127.0.0.1:9090)."}
	forceLeaveCmd = command{name: "force-leave", args: "NAME [--admin URL] [--token T]",
		about: "Remove a member that is dead or gone for good: the raft leader takes it out of raft and every\n" +
			"node drops it from its member list. Any node will do (followers forward to the leader).\n" +
			"A member that is alive is refused: stop it first, or run \"pingora-node leave\" on it."}
)

// leaveWait bounds how long "leave" waits for the node to stop answering.
const leaveWait = 60 * time.Second

// cmdLeave asks a node to leave the cluster for good and waits until it
// stops answering.
func cmdLeave(args []string, stdout, stderr io.Writer) int {
	fs := leaveCmd.newFlags()
	admin, token := adminFlags(fs, "the node")
	pos, code, done := leaveCmd.parse(fs, args, stdout, stderr)
	if done {
		return code
	}
	if code, done := leaveCmd.adminArg(fs, pos, admin, stderr); done {
		return code
	}
	base, code, done := leaveCmd.adminBase(fs, stderr, *admin)
	if done {
		return code
	}
	c := &adminClient{base: base, token: *token}
	var res node.LeaveResult
	if _, err := c.do(http.MethodPost, "/v1/leave", nil, "", &res); err != nil {
		fmt.Fprintln(stderr, "pingora-node leave:", err)
		return 1
	}
	printable(&res)
	fmt.Fprintf(stdout, "%s: raft %s, gossip %s; stopping\n", res.Name, res.Raft, res.Members)
	for deadline := time.Now().Add(leaveWait); time.Now().Before(deadline); {
		resp, err := (&http.Client{Timeout: time.Second}).Get(c.base + "/healthz")
		if err != nil {
			fmt.Fprintf(stdout, "%s: stopped\n", res.Name)
			return 0
		}
		resp.Body.Close()
		time.Sleep(100 * time.Millisecond) // polling the node until it stops answering
	}
	fmt.Fprintf(stdout, "%s: still finishing requests in flight after %s\n", res.Name, leaveWait)
	return 0
}

// cmdForceLeave removes a member that is dead or gone from raft and from
// every node's member list.
func cmdForceLeave(args []string, stdout, stderr io.Writer) int {
	fs := forceLeaveCmd.newFlags()
	admin, token := adminFlags(fs, "any node")
	pos, code, done := forceLeaveCmd.parse(fs, args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return forceLeaveCmd.usageError(fs, stderr, "want the NAME of one member")
	}
	base, code, done := forceLeaveCmd.adminBase(fs, stderr, *admin)
	if done {
		return code
	}
	c := &adminClient{base: base, token: *token}
	var res node.LeaveResult
	if _, err := c.do(http.MethodPost, "/v1/force-leave/"+url.PathEscape(pos[0]), nil, "", &res); err != nil {
		fmt.Fprintln(stderr, "pingora-node force-leave:", err)
		return 1
	}
	printable(&res)
	fmt.Fprintf(stdout, "%s: raft %s, gossip %s\n", res.Name, res.Raft, res.Members)
	return 0
}

// adminFlags registers --admin (the admin URL of whom) and --token.
func adminFlags(fs *flag.FlagSet, whom string) (admin, token *string) {
	admin = fs.String("admin", os.Getenv("PINGORA_ADMIN"), "admin `URL` of "+whom+" [PINGORA_ADMIN] (default http://127.0.0.1:9090)")
	token = new(string)
	tokenFlag(fs, token)
	return admin, token
}

// tokenFlag registers --token, whose value starts as PINGORA_ADMIN_TOKEN.
// It is never shown as the flag's default: that printed the token in
// every usage text (-h, and each usage error) into terminals and CI logs.
func tokenFlag(fs *flag.FlagSet, p *string) {
	*p = os.Getenv("PINGORA_ADMIN_TOKEN")
	fs.Var(secretFlag{p}, "token", "admin `token` [PINGORA_ADMIN_TOKEN]")
}

// secretFlag is a string flag whose value String never returns.
type secretFlag struct{ p *string }

func (s secretFlag) String() string     { return "" }
func (s secretFlag) Set(v string) error { *s.p = v; return nil }
