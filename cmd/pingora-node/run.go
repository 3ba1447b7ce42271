package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/node/config"
)

// runFlags are the flags of "run"; each overrides the node file.
type runFlags struct {
	config, name, adminAddr, pidFile, logLevel string
}

func (f *runFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", os.Getenv("PINGORA_CONFIG"), "node file (YAML) `path` [PINGORA_CONFIG]")
	fs.StringVar(&f.name, "name", os.Getenv("PINGORA_NAME"), "node `name`, overrides the file [PINGORA_NAME]")
	fs.StringVar(&f.adminAddr, "admin-addr", os.Getenv("PINGORA_ADMIN_ADDR"), "admin server `host:port`, overrides the file [PINGORA_ADMIN_ADDR]")
	fs.StringVar(&f.pidFile, "pid-file", "", "write the process id to `path` while running")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error, overrides the file")
}

// loadNode reads the node file and applies the flags.
func (f *runFlags) loadNode() (*config.Node, error) {
	if f.config == "" {
		return nil, fmt.Errorf("--config is required (or PINGORA_CONFIG)")
	}
	n, err := config.LoadNode(f.config)
	if err != nil {
		return nil, err
	}
	if f.name != "" {
		n.Name = f.name
	}
	if f.adminAddr != "" {
		n.AdminAddr = f.adminAddr
	}
	if f.logLevel != "" {
		n.LogLevel = f.logLevel
	}
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	return n, nil
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
	n, err := node.New(cfg, node.Options{Version: buildVersion(), AccessLog: stdout})
	if err != nil {
		fmt.Fprintln(stderr, "pingora-node:", err)
		return 1
	}
	if err := n.Start(); err != nil {
		fmt.Fprintln(stderr, "pingora-node:", err)
		return 1
	}
	if f.pidFile != "" {
		if err := os.WriteFile(f.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintln(stderr, "pingora-node: pid file:", err)
		}
		defer os.Remove(f.pidFile)
	}
	return serveUntilSignal(n, cfg)
}

// serveUntilSignal runs the node until SIGTERM or SIGINT (graceful stop
// within the grace period, exit 0); SIGHUP reloads.
func serveUntilSignal(n *node.Node, cfg *config.Node) int {
	sigs := make(chan os.Signal, 4) // a burst of signals is read one at a time
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			n.Reload()
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), cfg.GracePeriod)
		err := n.Shutdown(ctx)
		cancel()
		if err != nil {
			return 1
		}
		return 0
	}
	return 0
}
