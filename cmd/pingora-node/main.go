// Command pingora-node runs a pingora-go proxy node and talks to running
// ones. Run "pingora-node help" for the commands.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module build info.
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

const usage = `pingora-node: a programmable HTTP proxy node (pingora-go)

Usage:
  pingora-node run [--config node.yaml] [flags] run a node (see "pingora-node run -h")
  pingora-node demo                             run a local demo: 3 node processes and two sample upstreams
  pingora-node status [--admin URL] [--json]    show a running node's status
  pingora-node members [--admin URL] [--json]   list the cluster members a node sees
  pingora-node config get|apply -f FILE|history|rollback VERSION [--admin URL]
                                                read or change the replicated cluster config
  pingora-node peer enable|disable [--admin URL] [--token T] UPSTREAM ADDR
                                                put a peer back in rotation or take it out
  pingora-node version                          print the version

Environment: every flag of "run" has a variable (--raft-addr: PINGORA_RAFT_ADDR, see
"pingora-node run -h"); "run" reads the node file, then the variables, then the flags.
PINGORA_ADMIN_TOKEN and PINGORA_GOSSIP_KEY set the node's admin token and gossip key;
the other commands read PINGORA_ADMIN (admin URL) and PINGORA_ADMIN_TOKEN.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "members":
		return cmdMembers(args[1:], stdout, stderr)
	case "peer":
		return cmdPeer(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "pingora-node", buildVersion())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "pingora-node: unknown command %q\n\n%s", args[0], usage)
	return 2
}
