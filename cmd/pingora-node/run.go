package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pingora-go/pingora-go/internal/suggest"
	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/proxy/handoff"
)

// runFlags are the flags of "run". Every node-file setting in
// config.Settings has a flag and a PINGORA_* variable: the node file (if
// any) is read first, then the environment, then the flags, and the result
// is validated once.
type runFlags struct {
	config, pidFile string
	upgrade         bool
	overrides       []config.Override // the setting flags, in command-line order
}

func (f *runFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", os.Getenv("PINGORA_CONFIG"), "node file (YAML) `path`; optional: flags and PINGORA_* variables can set everything [PINGORA_CONFIG]")
	fs.StringVar(&f.pidFile, "pid-file", "", "write the process id to `path` while running")
	fs.BoolVar(&f.upgrade, "upgrade", false, "take the listeners over from the running node with the same upgrade socket, then let it drain")
	for _, st := range config.Settings {
		if st.Flag == "" {
			continue
		}
		fs.Func(st.Flag, st.Usage+" ["+st.Env+"]", func(v string) error {
			f.overrides = append(f.overrides, config.Override{Key: st.Key, Value: v, Source: "flag --" + st.Flag})
			return nil
		})
	}
}

// loadNode reads the node file, the environment and the flags, in that
// order, and validates the result.
func (f *runFlags) loadNode() (*config.Node, error) {
	if err := checkEnvNames(os.Environ()); err != nil {
		return nil, err
	}
	return config.Load(config.Sources{File: f.config, Env: os.Getenv, Flags: f.overrides})
}

// checkEnvNames refuses a PINGORA_ variable that is not one the node reads
// but is at most two edits from one: a typo (PINGORA_JION) would otherwise
// be ignored, and the node run without the setting. Variables further from
// every name are left alone: Kubernetes gives a pod PINGORA_NODE_PEERS_*
// for a Service named pingora-node, and other tools may have their own.
func checkEnvNames(environ []string) error {
	known := []string{"PINGORA_CONFIG", "PINGORA_ADMIN", upgradeFromEnv}
	for _, st := range config.Settings {
		known = append(known, st.Env)
	}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "PINGORA_") || slices.Contains(known, name) {
			continue
		}
		for _, k := range known {
			if suggest.Distance(name, k) <= 2 {
				return fmt.Errorf("%s: not a variable pingora-node reads (did you mean %s?); \"pingora-node run -h\" lists them", name, k)
			}
		}
	}
	return nil
}

var runCmd = command{name: "run", args: "[--config node.yaml] [flags]",
	about: "Run a node: node file, then PINGORA_* variables, then flags, validated once."}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := runCmd.newFlags()
	var f runFlags
	f.register(fs)
	pos, code, done := runCmd.parse(fs, args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) > 0 {
		return runCmd.usageError(fs, stderr, "takes no arguments, got %q", pos)
	}
	cfg, err := f.loadNode()
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node:", err)
		return 2
	}
	// From here on the log is JSON, as the node's own (issue 12): this
	// command's own lines too.
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("node", cfg.Name)
	stderr = logLines{log}
	gogc, memLimit := tuneGC(os.Getenv, cgroupMemoryMax)
	b := thisBuild()
	log.Info("starting", "version", b.Version, "commit", b.Commit, "gogc", gogc, "gomemlimit", memLimit)
	if limit, err := openFileLimit(); err == nil {
		if err := checkOpenFiles(log, cfg, limit); err != nil {
			log.Error("start refused", "err", err)
			return 1
		}
	}
	opts := node.Options{Version: b.Version, Commit: b.Commit, AccessLog: stdout}
	if f.upgrade {
		// The running process's socket: the node file may name another
		// one now (a SIGHUP that moved it), which this process offers
		// once it serves.
		from := cfg.UpgradeSocketPath()
		if v := os.Getenv(upgradeFromEnv); v != "" {
			from = v
		}
		in, err := handoff.Request(from, 10*time.Second)
		if err != nil {
			fmt.Fprintln(stderr, "pingora-node: --upgrade:", err)
			return 1
		}
		opts.Inherit = in
	}
	// A reload or upgrade request that arrives while the node starts waits
	// until it serves: the signals' default action would end the process.
	sigs := make(chan os.Signal, 4) // a burst of signals is read one at a time
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	n, err := node.New(cfg, opts)
	if err == nil {
		err = n.Start()
	}
	if err != nil {
		opts.Inherit.Fail(err)
		log.Error("start failed", "err", err)
		return 1
	}
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	// The pid file and systemd name this process before it offers the
	// upgrade socket: a successor that takes over at once announces
	// itself after this one, never before.
	if f.pidFile != "" {
		if err := writePidFile(f.pidFile); err != nil {
			fmt.Fprintln(stderr, "pingora-node: pid file:", err)
		}
		defer removePidFile(f.pidFile, n.Superseded())
	}
	sdNotify(fmt.Sprintf("READY=1\nMAINPID=%d", os.Getpid()))
	start := startSuccessor
	if err := n.OfferHandoff(); err != nil {
		fmt.Fprintln(stderr, "pingora-node: upgrades disabled:", err)
		start = noSuccessor(n, cfg.UpgradeSocketPath(), err)
	}
	exit := serveUntilSignal(n, cfg, &f, args, sigs, stderr, start)
	select {
	case <-n.Superseded():
		if os.Getpid() == 1 { // a container's init: see stayAsInit
			return stayAsInit(sigs, stderr)
		}
	default:
	}
	return exit
}

// writePidFile replaces the pid file atomically: during an upgrade the old
// process and tools read it while the successor rewrites it, and must
// never see it empty.
func writePidFile(path string) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// removePidFile removes the pid file when the process stops for good.
// After a hand-off (superseded is closed) the file is the successor's,
// whether or not it has rewritten it yet, and is never touched. Without
// one, only a successor could rewrite it, and none can take over any
// more: Shutdown has closed the upgrade socket and waited for a hand-off
// in progress to end, so reading and removing cannot race a writer.
func removePidFile(path string, superseded <-chan struct{}) {
	select {
	case <-superseded:
		return
	default:
	}
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

// serveUntilSignal runs the node until SIGTERM or SIGINT (graceful stop
// within the grace period, exit 0), until a successor took over (drain,
// exit 0), until "pingora-node leave" took it out of the cluster (drain,
// exit 0) or until the node failed for good (another live node has its
// name, or its seeds are another cluster: drain, exit 1). SIGHUP reloads
// the node file and the cluster config, starting a
// successor when the node file changed beyond what applies in place;
// SIGUSR2 starts a successor (binary upgrade). Either one, arriving after
// a successor took over (it was sent to the pid this process wrote),
// starts a successor too: it waits on the upgrade socket and takes over
// from the process serving by then, so the request is not lost.
func serveUntilSignal(n *node.Node, cfg *config.Node, f *runFlags, args []string, sigs <-chan os.Signal, stderr io.Writer,
	start func(args []string, from string, stderr io.Writer)) int {
	var stopped <-chan error // set once the drain starts
	superseded, handedOff := n.Superseded(), false
	failed, exit := n.Failed(), 0
	left := n.Left()
	for {
		select {
		case sig := <-sigs:
			switch {
			case sig != syscall.SIGHUP && sig != syscall.SIGUSR2:
				if stopped == nil {
					// Only a real stop tells systemd: after a hand-off the
					// unit lives on in the successor, which announced
					// itself as MAINPID.
					sdNotify("STOPPING=1")
					stopped = drain(n, cfg.GracePeriod)
				}
			case handedOff:
				// The successor offers the socket its node file names,
				// which may not be this process's.
				fmt.Fprintf(stderr, "pingora-node: %v after the hand-off: starting a process to take over from the successor\n", sig)
				startSuccessor(args, "", stderr)
			case stopped != nil: // stopping for good: nothing to reload or upgrade
			case sig == syscall.SIGHUP:
				reload(n, f, args, cfg.UpgradeSocketPath(), stderr, start)
			default:
				upgrade(n, f, args, cfg.UpgradeSocketPath(), stderr, start)
			}
		case <-superseded:
			superseded, handedOff = nil, true
			if stopped == nil {
				stopped = drain(n, cfg.GracePeriod)
			}
		case err := <-failed: // another live node has this node's name, ...
			failed, exit = nil, 1
			fmt.Fprintln(stderr, "pingora-node: stopping:", err)
			if stopped == nil {
				sdNotify("STOPPING=1")
				stopped = drain(n, cfg.GracePeriod)
			}
		case <-left: // "pingora-node leave": out of raft, now out of gossip
			left = nil
			if stopped == nil {
				sdNotify("STOPPING=1")
				stopped = drain(n, cfg.GracePeriod)
			}
		case err := <-stopped:
			if err != nil {
				return 1
			}
			return exit
		}
	}
}

// drain shuts the node down within grace; the channel yields the result.
func drain(n *node.Node, grace time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		done <- n.Shutdown(ctx)
	}()
	return done
}

// reload re-reads the node file: an invalid one is refused (the node
// keeps running as it is); a change only a new process can apply starts
// a successor.
func reload(n *node.Node, f *runFlags, args []string, from string, stderr io.Writer, start func(args []string, from string, stderr io.Writer)) {
	cfg, err := f.loadNode()
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node: reload refused, running config kept:", err)
		n.NoteReload("refused", err)
		return
	}
	err = n.ReloadFile(cfg)
	if errors.Is(err, node.ErrNotLive) {
		fmt.Fprintln(stderr, "pingora-node: reload refused, running config kept:", err)
		n.NoteReload("refused", err)
		return
	}
	if errors.Is(err, node.ErrNeedsHandoff) {
		fmt.Fprintln(stderr, "pingora-node: node file changed; handing off to a new process")
		n.NoteReload("handed_off", nil)
		start(args, from, stderr)
	}
}

// noSuccessor replaces startSuccessor in a process that could not offer
// its upgrade socket (another running process holds path: a second node
// on the host with the same name, so the same default socket, or the same
// upgrade_socket). A successor would connect to path and be passed that
// process's listeners: another node, which then logged a failed upgrade it
// was never asked for, while this one's successor failed to bind its own
// ports ("address already in use") and nothing said why. It refuses
// instead, saying why.
func noSuccessor(n *node.Node, path string, offerErr error) func(args []string, from string, stderr io.Writer) {
	return func(_ []string, _ string, stderr io.Writer) {
		err := fmt.Errorf("this process does not hold its upgrade socket %s (%v), so a successor would take over from "+
			"the process that does; give this node an upgrade_socket of its own (--upgrade-socket) and restart it", path, offerErr)
		fmt.Fprintln(stderr, "pingora-node: upgrade refused, this process keeps serving:", err)
		n.NoteReload("refused", err)
	}
}

// upgrade starts a successor (SIGUSR2, systemctl reload) unless the node
// file now changes what no process of a cluster member can take on
// (cluster_name, gossip_key): the successor would start, take the
// listeners, gossip and raft over, and find itself refused by the other
// members while this process had exited. A node file that does not load
// is left to the successor, which fails at its start and changes nothing.
func upgrade(n *node.Node, f *runFlags, args []string, from string, stderr io.Writer, start func(args []string, from string, stderr io.Writer)) {
	if cfg, err := f.loadNode(); err == nil {
		if err := n.CheckSuccessorFile(cfg); err != nil {
			fmt.Fprintln(stderr, "pingora-node: upgrade refused, this process keeps serving:", err)
			n.NoteReload("refused", err)
			return
		}
	}
	start(args, from, stderr)
}

// upgradeFromEnv names, for a successor, the upgrade socket of the
// process that started it, when the node file may name another.
const upgradeFromEnv = "PINGORA_UPGRADE_FROM"

// startSuccessor starts this binary again with "run --upgrade" and the
// same flags. It takes the listeners over through the upgrade socket at
// from (this process's; "": the one the node file names); if it fails,
// this process keeps serving and logs why.
func startSuccessor(args []string, from string, stderr io.Writer) {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node: upgrade:", err)
		return
	}
	cargs := []string{"run", "--upgrade"}
	for _, a := range args {
		if a != "--upgrade" && a != "-upgrade" {
			cargs = append(cargs, a)
		}
	}
	cmd := exec.Command(exe, cargs...)
	cmd.Env = make([]string, 0, len(os.Environ())+1) // never nil: that would be all of this one's
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, upgradeFromEnv+"=") { // this process's own, if it is a successor
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if from != "" {
		cmd.Env = append(cmd.Env, upgradeFromEnv+"="+from)
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // outlives this process's group signals
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "pingora-node: upgrade:", err)
		return
	}
	fmt.Fprintf(stderr, "pingora-node: started successor pid %d\n", cmd.Process.Pid)
	go func() {
		// Reap it; if it exits while this process still runs, the
		// hand-off failed and the offer loop has logged why.
		if err := cmd.Wait(); err != nil {
			fmt.Fprintf(stderr, "pingora-node: successor pid %d exited: %v\n", cmd.Process.Pid, err)
		}
		if cmd.ProcessState != nil {
			successorExit.Store(int32(exitCode(cmd.ProcessState.Sys().(syscall.WaitStatus))))
		}
	}()
}

// sdNotify sends a state line to systemd when it supervises the process
// (Type=notify, NotifyAccess=all in the unit); elsewhere it does nothing.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}

// logLines turns this command's text lines ("pingora-node: ...") into
// JSON records, so every line on stderr is JSON once the log started:
// notices at info, anything else (a refused reload, a failed upgrade) a
// warning.
type logLines struct{ l *slog.Logger }

func (w logLines) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		msg := strings.TrimPrefix(line, "pingora-node: ")
		level := slog.LevelWarn
		if strings.HasPrefix(msg, "started successor") || strings.Contains(msg, "handing off") {
			level = slog.LevelInfo
		}
		w.l.Log(context.Background(), level, msg)
	}
	return len(p), nil
}
