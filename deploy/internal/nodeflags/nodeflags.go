package nodeflags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/pingora-go/pingora-go/node/config"
)

// Load parses args (starting with "run") and env as "pingora-node run"
// does, with hostname as the host name, and returns the validated node
// settings. A flag the binary does not know, a PINGORA_ variable that is
// not a setting, or a value the node would refuse is an error.
func Load(args []string, env map[string]string, hostname string) (*config.Node, error) {
	if len(args) == 0 || args[0] != "run" {
		return nil, fmt.Errorf("nodeflags: the command is %q, want run ...", args)
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var flags []config.Override
	for _, st := range config.Settings {
		if st.Flag == "" {
			continue
		}
		fs.Func(st.Flag, st.Usage, func(v string) error {
			flags = append(flags, config.Override{Key: st.Key, Value: v, Source: "flag --" + st.Flag})
			return nil
		})
	}
	if err := fs.Parse(args[1:]); err != nil {
		return nil, fmt.Errorf("nodeflags: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("nodeflags: unexpected arguments %q", fs.Args())
	}
	if err := checkEnv(env); err != nil {
		return nil, err
	}
	return config.Load(config.Sources{
		Env:      func(k string) string { return env[k] },
		Flags:    flags,
		Hostname: func() (string, error) { return hostname, nil },
	})
}

// checkEnv refuses PINGORA_ variables that set nothing (the node refuses
// only a typo within two letters of a name; one further off it ignores).
func checkEnv(env map[string]string) error {
	known := map[string]bool{"PINGORA_CONFIG": true}
	for _, st := range config.Settings {
		known[st.Env] = true
	}
	var errs []error
	for k := range env {
		if strings.HasPrefix(k, "PINGORA_") && !known[k] {
			errs = append(errs, fmt.Errorf("nodeflags: %s is not a setting of pingora-node run", k))
		}
	}
	return errors.Join(errs...)
}
