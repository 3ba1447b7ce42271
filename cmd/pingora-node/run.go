package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

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
	return config.Load(config.Sources{File: f.config, Env: os.Getenv, Flags: f.overrides})
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f runFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := f.loadNode()
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node:", err)
		return 2
	}
	tuneGC(os.Getenv, cgroupMemoryMax)
	opts := node.Options{Version: buildVersion(), AccessLog: stdout}
	if f.upgrade {
		in, err := handoff.Request(cfg.UpgradeSocketPath(), 10*time.Second)
		if err != nil {
			fmt.Fprintln(stderr, "pingora-node: --upgrade:", err)
			return 1
		}
		opts.Inherit = in
	}
	n, err := node.New(cfg, opts)
	if err == nil {
		err = n.Start()
	}
	if err != nil {
		opts.Inherit.Fail(err)
		fmt.Fprintln(stderr, "pingora-node:", err)
		return 1
	}
	if err := n.OfferHandoff(); err != nil {
		fmt.Fprintln(stderr, "pingora-node: upgrades disabled:", err)
	}
	if f.pidFile != "" {
		if err := writePidFile(f.pidFile); err != nil {
			fmt.Fprintln(stderr, "pingora-node: pid file:", err)
		}
		defer removePidFile(f.pidFile)
	}
	sdNotify(fmt.Sprintf("READY=1\nMAINPID=%d", os.Getpid()))
	return serveUntilSignal(n, cfg, &f, args, stderr)
}

// writePidFile replaces the pid file atomically: during an upgrade the old
// process and tools read it while the successor rewrites it, and must
// never see it empty.
func writePidFile(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removePidFile removes the pid file unless a successor rewrote it.
func removePidFile(path string) {
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

// serveUntilSignal runs the node until SIGTERM or SIGINT (graceful stop
// within the grace period, exit 0) or until a successor took over (drain,
// exit 0). SIGHUP reloads the node file and the cluster config, starting a
// successor when the node file changed beyond what applies in place;
// SIGUSR2 starts a successor (binary upgrade).
func serveUntilSignal(n *node.Node, cfg *config.Node, f *runFlags, args []string, stderr io.Writer) int {
	sigs := make(chan os.Signal, 4) // a burst of signals is read one at a time
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				reload(n, f, args, stderr)
				continue
			case syscall.SIGUSR2:
				startSuccessor(args, stderr)
				continue
			}
			// Only a real stop tells systemd: after a hand-off the unit
			// lives on in the successor, which announced itself as MAINPID.
			sdNotify("STOPPING=1")
		case <-n.Superseded():
		}
		ctx, cancel := context.WithTimeout(context.Background(), cfg.GracePeriod)
		err := n.Shutdown(ctx)
		cancel()
		if err != nil {
			return 1
		}
		return 0
	}
}

// reload re-reads the node file: an invalid one is refused (the node
// keeps running as it is); a change only a new process can apply starts
// a successor.
func reload(n *node.Node, f *runFlags, args []string, stderr io.Writer) {
	cfg, err := f.loadNode()
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node: reload refused, running config kept:", err)
		return
	}
	err = n.ReloadFile(cfg)
	if errors.Is(err, node.ErrNeedsHandoff) {
		fmt.Fprintln(stderr, "pingora-node: node file changed; handing off to a new process")
		startSuccessor(args, stderr)
	}
}

// startSuccessor starts this binary again with "run --upgrade" and the
// same flags. It takes the listeners over through the upgrade socket; if
// it fails, this process keeps serving and logs why.
func startSuccessor(args []string, stderr io.Writer) {
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
