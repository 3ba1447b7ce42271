// Command pingora-node runs a pingora-go proxy node and talks to running
// ones. Run "pingora-node help" for the commands.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/pingora-go/pingora-go/internal/suggest"
)

const usage = `pingora-node: a programmable HTTP proxy node (pingora-go)

Usage:
  pingora-node run [--config node.yaml] [flags] run a node (see "pingora-node run -h")
  pingora-node demo                             run a local demo: 3 nodes and two sample upstreams
  pingora-node status [ADMIN] [--json]          show a running node's status
  pingora-node members [ADMIN] [--json]         list the cluster members a node sees
  pingora-node limits [ADMIN] [--json]          show the rate limits: rules, keys, busiest global keys and owners
  pingora-node config get|apply|history|rollback [flags]
                                                read or change the replicated cluster config
  pingora-node peer enable|disable UPSTREAM ADDR [--admin URL] [--token T]
                                                put a peer back in rotation or take it out
  pingora-node leave [ADMIN] [--token T]        the node leaves the cluster for good and stops
  pingora-node force-leave NAME [--admin URL] [--token T]
                                                remove a dead member from raft and every member list
  pingora-node cache stats|purge [flags]        every node's HTTP cache; purge by URL, prefix or tag
  pingora-node version                          print the version and the commit
  pingora-node help [COMMAND]                   this text, or a command's flags

ADMIN is a node's admin address (host:port or URL; default http://127.0.0.1:9090).
Flags may come before or after the arguments; every command takes -h.

Environment: every flag of "run" has a variable (--raft-addr: PINGORA_RAFT_ADDR, see
"pingora-node run -h"); "run" reads the node file, then the variables, then the flags.
PINGORA_ADMIN_TOKEN and PINGORA_GOSSIP_KEY set the node's admin token and gossip key;
the other commands read PINGORA_ADMIN (admin URL) and PINGORA_ADMIN_TOKEN.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// commands maps each command to its entry point.
var commands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"run": cmdRun, "demo": cmdDemo, "status": cmdStatus, "members": cmdMembers,
	"config": cmdConfig, "peer": cmdPeer, "version": cmdVersion,
	"leave": cmdLeave, "force-leave": cmdForceLeave, "limits": cmdLimits, "cache": cmdCache,
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if cmd, ok := commands[args[0]]; ok {
		return cmd(args[1:], stdout, stderr)
	}
	switch args[0] {
	case "--version", "-v":
		return cmdVersion(nil, stdout, stderr)
	case "help", "-h", "--help", "-help":
		if len(args) > 1 {
			if cmd, ok := commands[args[1]]; ok {
				return cmd(append(args[2:], "-h"), stdout, stderr)
			}
			// "help statsu" is a mistyped command too.
			return unknownCommand(args[1], stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	return unknownCommand(args[0], stderr)
}

// otherToolsCommands says what to do instead of a command that Consul's
// or nginx's CLI has and this one does not.
var otherToolsCommands = map[string]string{
	"reload": "a node reloads on SIGHUP (kill -HUP $(cat PID_FILE), the pid file of run --pid-file; " +
		"systemctl reload pingora-node starts a successor that reads both files); \"pingora-node status\" then shows the outcome on its reload line",
	"join": "a node joins through its seeds (run --join, retried until one answers); there is no command to join a running node elsewhere",
	"upgrade": "a node upgrades on SIGUSR2 (kill -USR2 $(cat PID_FILE), the pid file of run --pid-file): it starts the binary on disk " +
		"with the same flags, which takes the listeners, gossip and raft over while this process drains; \"pingora-node status\" then shows the new process's uptime",
	"stop": "a node stops gracefully on SIGTERM (kill $(cat PID_FILE), the pid file of run --pid-file; systemctl stop pingora-node); " +
		"\"pingora-node leave\" also takes it out of the cluster for good",
}

// unknownCommand reports a command that does not exist, with the nearest
// one (or what to do instead), and the usage: exit code 2.
func unknownCommand(name string, stderr io.Writer) int {
	known := make([]string, 0, len(commands))
	for c := range commands {
		known = append(known, c)
	}
	sort.Strings(known)
	hint := ""
	if h, ok := otherToolsCommands[name]; ok {
		hint = ": " + h
	} else if s := suggest.Closest(name, known); s != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	}
	fmt.Fprintf(stderr, "pingora-node: unknown command %q%s\n\n%s", name, hint, usage)
	return 2
}
