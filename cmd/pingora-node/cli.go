package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/pingora-go/pingora-go/internal/suggest"
)

// command describes one subcommand for its usage text.
type command struct {
	// name is the command as typed after "pingora-node", e.g. "config get".
	name string
	// args is the synopsis after the name, e.g. "[ADMIN] [flags]".
	args string
	// about is one or two sentences on what it does.
	about string
}

// newFlags returns the flag set of c; parse it with c.parse.
func (c command) newFlags() *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse prints errors and usage itself
	fs.Usage = func() {}
	return fs
}

// usage writes the command's usage and flags to w.
func (c command) usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", strings.TrimSpace("pingora-node "+c.name+" "+c.args), c.about)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags (before or after the arguments):")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// parse parses args with flags anywhere among the positional arguments
// ("peer disable web 10.0.0.1:80 --admin X" as well as flags first); "--"
// ends the flags. It returns the positional arguments, or done with the
// exit code: 0 after -h/--help (usage on stdout), 2 after a flag error
// (the error and usage on stderr).
func (c command) parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (pos []string, code int, done bool) {
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			c.usage(stdout, fs)
			return nil, 0, true
		}
		if err != nil {
			fmt.Fprintf(stderr, "pingora-node %s: %v%s\n\n", c.name, err, flagHint(fs, err))
			c.usage(stderr, fs)
			return nil, 2, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			fillFromEnv(fs)
			return pos, 0, false
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			fillFromEnv(fs)
			return append(pos, rest...), 0, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// envDefaults names the environment variable that gives a client flag its
// value when the command line does not. The variable is read after the
// flags are parsed, not registered as the flag's default, so the usage text
// (printed on -h and after every mistyped flag) never shows its value: an
// admin token, or an admin URL, which may carry credentials.
var envDefaults = map[string]string{"admin": "PINGORA_ADMIN", "token": "PINGORA_ADMIN_TOKEN"}

// fillFromEnv sets each flag of envDefaults that fs defines and the command
// line left unset from its variable. It sets the value itself, not through
// fs.Set, so flagSet still reports only what was typed.
func fillFromEnv(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		env, ok := envDefaults[f.Name]
		if !ok || flagSet(fs, f.Name) {
			return
		}
		if v := os.Getenv(env); v != "" {
			_ = f.Value.Set(v) // string flags: Set cannot fail
		}
	})
}

// adminArg takes the admin address from the one positional argument, if
// any, into *admin (the --admin flag's value); on a usage error it returns
// done with the exit code.
func (c command) adminArg(fs *flag.FlagSet, pos []string, admin *string, stderr io.Writer) (code int, done bool) {
	switch {
	case len(pos) > 1:
		return c.usageError(fs, stderr, "want at most one ADMIN address, got %q", pos), true
	case len(pos) == 1 && flagSet(fs, "admin"):
		return c.usageError(fs, stderr, "give the admin address once: %q or --admin %q", pos[0], *admin), true
	case len(pos) == 1:
		*admin = pos[0]
	}
	return 0, false
}

// adminBase returns the admin API's base URL for admin (host:port or URL),
// or reports a usage error: an address with a path, query, fragment or
// user, or a scheme other than http and https, is refused before anything
// is sent. Paths were appended to it as they were, so "--admin
// http://host:9090/v1/leave#" sent peer disable's POST to /v1/leave.
func (c command) adminBase(fs *flag.FlagSet, stderr io.Writer, admin string) (base string, code int, done bool) {
	base = adminURL(admin)
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || strings.Trim(u.Path, "/") != "" ||
		u.RawQuery != "" || u.Fragment != "" || strings.Contains(base, "#") || strings.Contains(base, "?") || u.User != nil {
		if u != nil && u.User != nil {
			admin = u.Redacted() // the refusal names the address, not its password
		}
		return "", c.usageError(fs, stderr, "%q is not an admin address (host:port or http://host:port)", admin), true
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", c.usageError(fs, stderr, "%q is not an admin address: port %q is not a number from 1 to 65535", admin, p), true
		}
	} else if !strings.Contains(admin, "://") {
		// A bare host was sent to port 80 ("connection refused", or a
		// proxy listener's answer); the admin API is on admin_addr's port.
		return "", c.usageError(fs, stderr, "%q has no port: give the node's admin address as host:port (%s with the default admin port)",
			admin, net.JoinHostPort(u.Hostname(), "9090")), true
	}
	return strings.TrimRight(base, "/"), 0, false
}

// usageError reports wrong arguments: the message and the usage on
// stderr, exit code 2.
func (c command) usageError(fs *flag.FlagSet, stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "pingora-node %s: %s\n\n", c.name, fmt.Sprintf(format, a...))
	c.usage(stderr, fs)
	return 2
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// flagHint suggests the defined flag nearest to an undefined one the
// error names (" (did you mean --join?)"), or returns "".
func flagHint(fs *flag.FlagSet, err error) string {
	const undefined = "flag provided but not defined: -"
	msg := err.Error()
	if !strings.HasPrefix(msg, undefined) {
		return ""
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	typed := strings.TrimLeft(strings.TrimPrefix(msg, undefined), "-")
	if s := suggest.Closest(typed, names); s != "" {
		return fmt.Sprintf(" (did you mean --%s?)", s)
	}
	return ""
}

// isHelp reports whether args ask for help and nothing else.
func isHelp(args []string) bool {
	return len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help")
}

// subcommandFirst moves the first argument that names one of subs to the
// front when the arguments start with a flag: "config --admin A get" runs
// as "config get --admin A", as flags may come before or after the other
// arguments everywhere else. It was refused as the unknown subcommand
// "--admin".
func subcommandFirst(args, subs []string) []string {
	if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return args
	}
	for i, a := range args {
		if slices.Contains(subs, a) {
			return append(append([]string{a}, args[:i]...), args[i+1:]...)
		}
	}
	return args
}
