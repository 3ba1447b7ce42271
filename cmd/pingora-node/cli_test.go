package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestHelpExitsZero (issue 12): -h, --help and "help CMD" print the usage
// on stdout and exit 0 for the top level and every command.
func TestHelpExitsZero(t *testing.T) {
	var cases [][]string
	for _, h := range []string{"-h", "--help"} {
		cases = append(cases, []string{h})
		for _, cmd := range []string{"run", "demo", "status", "members", "config", "config get", "config apply", "config history", "config rollback", "peer", "version", "limits", "leave", "force-leave", "cache", "cache stats", "cache purge"} {
			cases = append(cases, append(strings.Fields(cmd), h))
		}
	}
	cases = append(cases, []string{"help"}, []string{"help", "status"}, []string{"help", "config"}, []string{"peer", "disable", "-h"})
	for _, args := range cases {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 || !strings.Contains(strings.ToLower(out.String()), "usage") || errb.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
		if strings.Contains(out.String(), " \n") {
			t.Errorf("%v: a line ends in a space: %q", args, out.String())
		}
	}
}

// TestMistypedCommandsAndFlags: a clear error, a suggestion where one is
// near, the usage, exit 2.
func TestMistypedCommandsAndFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"statsu"}, []string{`unknown command "statsu"`, `did you mean "status"`, "Usage:"}},
		{[]string{"memebrs"}, []string{`did you mean "members"`}},
		// Consul's and nginx's habits: say what to do instead.
		{[]string{"reload"}, []string{`unknown command "reload": a node reloads on SIGHUP`, "reload line", "Usage:"}},
		{[]string{"join", "10.0.0.1:7946"}, []string{`unknown command "join": a node joins through its seeds (run --join`}},
		{[]string{"upgrade"}, []string{`unknown command "upgrade": a node upgrades on SIGUSR2 (kill -USR2 $(cat PID_FILE)`, "Usage:"}},
		{[]string{"stop", "n1"}, []string{`unknown command "stop": a node stops gracefully on SIGTERM`, `"pingora-node leave"`}},
		{[]string{"status", "--bogus"}, []string{"pingora-node status: flag provided but not defined: -bogus", "usage: pingora-node status"}},
		{[]string{"config", "aply"}, []string{`unknown subcommand "aply"`, `did you mean "apply"`}},
		{[]string{"config", "get", "-f", "x.yaml"}, []string{"flag provided but not defined: -f"}},
		{[]string{"run", "--jion", "127.0.0.1:7946"}, []string{"flag provided but not defined: -jion (did you mean --join?)", "usage: pingora-node run"}},
		{[]string{"status", "--admn", "127.0.0.1:1"}, []string{"(did you mean --admin?)"}},
		{[]string{"run", "node.yaml"}, []string{"pingora-node run: takes no arguments"}},
		{[]string{"demo", "now"}, []string{"pingora-node demo: takes no arguments"}},
		{[]string{"version", "x"}, []string{"takes no arguments"}},
		{[]string{"status", "a:1", "b:2"}, []string{"at most one ADMIN address"}},
		{[]string{"status", "127.0.0.1:1", "--admin", "127.0.0.1:2"}, []string{"give the admin address once"}},
		{[]string{"status", "http://127.0.0.1:1/status"}, []string{"is not an admin address"}},
		{[]string{"peer", "drain", "web", "a:1"}, []string{"want enable or disable"}},
		{[]string{"peer", "disabel", "web", "a:1"}, []string{`unknown subcommand "disabel"`, `did you mean "disable"`, "usage: pingora-node peer"}},
		{[]string{"config", "rollback"}, []string{"wants one VERSION"}},
		{[]string{"help", "statsu"}, []string{`unknown command "statsu"`, `did you mean "status"`}},
		// An admin address with a path, query or fragment: the command
		// paths were appended to it, so this peer disable was a POST to
		// /v1/leave. Refused before anything is sent.
		{[]string{"peer", "disable", "web", "a:1", "--admin", "http://127.0.0.1:1/v1/leave#"}, []string{"is not an admin address"}},
		{[]string{"config", "get", "--admin", "127.0.0.1:1/ui"}, []string{"is not an admin address"}},
		{[]string{"config", "apply", "-f", "x.yaml", "--admin", "http://127.0.0.1:1?x"}, []string{"is not an admin address"}},
		{[]string{"cache", "stats", "ftp://127.0.0.1:1"}, []string{"is not an admin address"}},
		{[]string{"cache", "purge", "http://a.test/x", "--admin", "http://u@127.0.0.1:1"}, []string{"is not an admin address"}},
		{[]string{"leave", "127.0.0.1:1/v1/config"}, []string{"is not an admin address"}},
		{[]string{"force-leave", "n2", "--admin", "127.0.0.1:1/x"}, []string{"is not an admin address"}},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		for _, w := range tc.want {
			if code != 2 || !strings.Contains(errb.String(), w) {
				t.Errorf("%v: exit %d, stderr %q, want 2 and %q", tc.args, code, errb.String(), w)
			}
		}
	}
}

// TestParseFlagsAnywhere: flags before, between and after the positional
// arguments; "--" ends the flags.
func TestParseFlagsAnywhere(t *testing.T) {
	c := command{name: "t", args: "A B"}
	for _, tc := range []struct {
		args  []string
		pos   []string
		admin string
		json  bool
	}{
		{[]string{"disable", "web", "1.2.3.4:80", "--admin", "h:1"}, []string{"disable", "web", "1.2.3.4:80"}, "h:1", false},
		{[]string{"--admin", "h:1", "disable", "web", "1.2.3.4:80"}, []string{"disable", "web", "1.2.3.4:80"}, "h:1", false},
		{[]string{"disable", "-json", "web", "--admin=h:2", "x"}, []string{"disable", "web", "x"}, "h:2", true},
		{[]string{"a", "--", "--admin", "b"}, []string{"a", "--admin", "b"}, "", false},
		{nil, nil, "", false},
	} {
		fs := c.newFlags()
		admin := fs.String("admin", "", "")
		asJSON := fs.Bool("json", false, "")
		pos, code, done := c.parse(fs, tc.args, &bytes.Buffer{}, &bytes.Buffer{})
		if done || code != 0 || !reflect.DeepEqual(pos, tc.pos) || *admin != tc.admin || *asJSON != tc.json {
			t.Errorf("%q: pos %q admin %q json %v (done %v code %d)", tc.args, pos, *admin, *asJSON, done, code)
		}
	}
	fs := c.newFlags()
	fs.String("admin", "", "")
	if _, code, done := c.parse(fs, []string{"x", "--admin"}, &bytes.Buffer{}, &bytes.Buffer{}); !done || code != 2 {
		t.Errorf("flag without its value: done %v code %d", done, code)
	}
}

func TestReadBuild(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261129080138-74c509a39c97+dirty"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "74c509a39c978a12f1b49ed09291448fceca9609"}, {Key: "vcs.time", Value: "2026-11-29T08:01:38Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want build
	}{
		{"stamped", bi, true, build{Version: "v0.0.0-20261129080138-74c509a39c97+dirty", Commit: "74c509a39c97+dirty", Time: "2026-11-29T08:01:38Z"}},
		{"no vcs", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, build{Version: "(devel)"}},
		{"no build info", nil, false, build{Version: "(devel)"}},
	} {
		if got := readBuild(tc.bi, tc.ok); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if s := readBuild(bi, true).String(); !strings.HasPrefix(s, "pingora-node v0.0.0-20261129080138-74c509a39c97+dirty\ncommit 74c509a39c97+dirty (2026-11-29T08:01:38Z)\ngo") {
		t.Errorf("version text: %q", s)
	}
}

// TestVersionOfTheBinary: the built binary prints what "go version -m"
// reads from it: the module version and, when stamped, the commit.
func TestVersionOfTheBinary(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	meta, err := exec.Command("go", "version", "-m", binary).Output()
	if err != nil {
		t.Fatal(err)
	}
	modVersion, rev := "", ""
	for _, l := range strings.Split(string(meta), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "mod" {
			modVersion = f[2]
		}
		if len(f) >= 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision=") {
			rev = strings.TrimPrefix(f[1], "vcs.revision=")[:12]
		}
	}
	first := strings.SplitN(string(out), "\n", 2)[0]
	if modVersion == "" || first != "pingora-node "+modVersion || strings.Contains(string(out), "dev\n") {
		t.Fatalf("version printed %q; go version -m says module %q", out, modVersion)
	}
	if rev != "" && !strings.Contains(string(out), "commit "+rev) || rev == "" && !strings.Contains(string(out), "commit unknown") {
		t.Fatalf("version printed %q; go version -m says revision %q", out, rev)
	}
	t.Logf("%s", out)
}

// TestRollbackReadsThroughTheLeader: rollback takes its If-Match from a
// consistent read (a follower's history may lag), and a write that lands
// between its read and its write is reported, named as rollback's, and
// not retried over. The node is a stand-in that records what it is sent.
func TestRollbackReadsThroughTheLeader(t *testing.T) {
	var gotIfMatch, gotQuery string
	conflict := true
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "GET" && r.URL.Path == "/v1/config/history":
			io.WriteString(w, `[{"version": 1, "content": "a"}, {"version": 2, "content": "b"}]`) // a follower's, behind
		case r.Method == "GET" && r.URL.Path == "/v1/config":
			gotQuery = r.URL.RawQuery
			io.WriteString(w, `{"version": 3, "content": "c"}`)
		case r.Method == "PUT":
			gotIfMatch = r.Header.Get("If-Match")
			if conflict {
				w.WriteHeader(409)
				io.WriteString(w, `{"error": "consensus: version conflict", "current_version": 4}`)
				return
			}
			io.WriteString(w, `{"version": 4, "hash": "sha256:x"}`)
		}
	}))
	defer node.Close()
	code, _, errs := cli("config", "rollback", "1", "--admin", node.URL)
	if code != 1 || gotQuery != "consistent=true" || gotIfMatch != "3" ||
		!strings.Contains(errs, "pingora-node config rollback: version 4 was written while this command ran (it read version 3); nothing was rolled back") {
		t.Fatalf("conflict: exit %d, query %q, If-Match %q, stderr %q", code, gotQuery, gotIfMatch, errs)
	}
	conflict = false
	if code, out, errs := cli("config", "rollback", "--admin", node.URL, "1"); code != 0 || out != "applied: version 4 sha256:x (the content of version 1)\n" {
		t.Fatalf("rollback: exit %d %q %q", code, out, errs)
	}
	for _, tc := range []struct{ args, want string }{
		{"config rollback 9 --admin " + node.URL, "pingora-node config rollback: version 9 is not in the kept history (versions 1 to 2)"},
		{"config rollback 1 --admin 127.0.0.1:1", "pingora-node config rollback: reading the history: node unreachable"},
	} {
		if code, _, errs := cli(strings.Fields(tc.args)...); code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d %q", tc.args, code, errs)
		}
	}
}

// TestEnvSecretsStayOutOfUsage: PINGORA_ADMIN_TOKEN and PINGORA_ADMIN
// reach the node but never the usage text that -h and a mistyped flag
// print (they were the flags' defaults, so "config apply --file x" showed
// the token on the terminal, in a CI log, on a shared screen).
func TestEnvSecretsStayOutOfUsage(t *testing.T) {
	const token = "tok-3f9c2a7e-secret"
	var gotAuth, gotPath string
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotPath = r.Header.Get("Authorization"), r.URL.Path
		io.WriteString(w, `{"upstream": "web", "addr": "10.0.0.1:80", "disabled": true}`)
	}))
	defer node.Close()
	t.Setenv("PINGORA_ADMIN_TOKEN", token)
	t.Setenv("PINGORA_ADMIN", node.URL)

	for _, c := range []string{"status", "members", "limits", "config get", "config apply", "config history",
		"config rollback", "peer", "leave", "force-leave", "cache stats", "cache purge"} {
		for _, extra := range []string{"-h", "--tokn=x", "--admn=x"} {
			args := append(strings.Fields(c), extra)
			_, out, errs := cli(args...)
			if strings.Contains(out+errs, token) || strings.Contains(out+errs, node.URL) {
				t.Errorf("%q printed a variable's value:\n%s%s", args, out, errs)
			}
		}
	}
	// A usage error of its own (a URL with no host) prints the usage too.
	if _, out, errs := cli("cache", "purge", "/no/host"); strings.Contains(out+errs, token) || !strings.Contains(errs, "usage:") {
		t.Errorf("cache purge /no/host:\n%s%s", out, errs)
	}

	// The variables still give the flags their values...
	if code, _, errs := cli("peer", "disable", "web", "10.0.0.1:80"); code != 0 || gotAuth != "Bearer "+token ||
		!strings.HasPrefix(gotPath, "/v1/upstreams/web/peers/") {
		t.Fatalf("from the environment: exit %d, Authorization %q, path %q, stderr %q", code, gotAuth, gotPath, errs)
	}
	// ...and a flag given on the command line wins over them.
	if code, _, errs := cli("peer", "disable", "web", "10.0.0.1:80", "--token", "typed"); code != 0 || gotAuth != "Bearer typed" {
		t.Fatalf("flag over variable: exit %d, Authorization %q, stderr %q", code, gotAuth, errs)
	}

	// An address refused for carrying credentials is named without them.
	t.Setenv("PINGORA_ADMIN", "http://ops:hunter2@127.0.0.1:1")
	if _, _, errs := cli("status"); strings.Contains(errs, "hunter2") || !strings.Contains(errs, "is not an admin address") {
		t.Fatalf("credentials in the refusal: %q", errs)
	}
}

// TestRunRefusesMistypedVariable: a PINGORA_ variable a letter or two
// from one the node reads is refused with the name it was meant to be
// (PINGORA_JION was ignored: the node ran alone, and only deploy's own
// test caught such a typo in the manifests). Variables far from every
// name, such as those Kubernetes makes for a Service named pingora-node,
// are left alone.
func TestRunRefusesMistypedVariable(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PINGORA_JION", "10.0.0.1:7946")
	var out, errb bytes.Buffer
	code := run([]string{"run", "--name", "x", "--listen", "127.0.0.1:0", "--cluster-config", filepath.Join(dir, "missing.yaml")}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "PINGORA_JION: not a variable pingora-node reads (did you mean PINGORA_JOIN?)") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if err := checkEnvNames([]string{"PINGORA_NODE_PEERS_SERVICE_HOST=10.0.0.1", "PINGORA_NODE_PEERS_PORT=tcp://10.0.0.1:7946",
		"PINGORA_ADMIN=http://x:9090", "PINGORA_UPGRADE_FROM=/run/u.sock", "PINGORA_BOOTSTRAP_EXPECT=3", "PINGORA_MEASURE=1"}); err != nil {
		t.Fatalf("refused: %v", err)
	}
	if err := checkEnvNames([]string{"PINGORA_BOOTSRAP_EXPECT=3"}); err == nil || !strings.Contains(err.Error(), "did you mean PINGORA_BOOTSTRAP_EXPECT?") {
		t.Fatalf("PINGORA_BOOTSRAP_EXPECT: %v", err)
	}
}

// TestClientAtAPortThatIsNotAdmin: a client command given a node's gossip
// or cluster port instead of its admin address (both take a connection
// and close it, or reset it, without an HTTP answer) printed only
// `node unreachable: Get ".../status": EOF`, as from the real binary at
// a gossip port; it now says which address it wants, as the 404 of a
// proxy listener already did. A port nobody listens on is not given the
// hint.
func TestClientAtAPortThatIsNotAdmin(t *testing.T) {
	for _, reset := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Read(make([]byte, 1)) // the gossip gate reads a header, then closes
				if reset {
					c.(*net.TCPConn).SetLinger(0)
				}
				c.Close()
			}
		}()
		for _, args := range [][]string{{"status", ln.Addr().String()}, {"members", ln.Addr().String()},
			{"config", "get", "--admin", ln.Addr().String()}} {
			code, _, errs := cli(args...)
			if code != 1 || !strings.Contains(errs, "node unreachable") || !strings.Contains(errs, "not its gossip port (7946) or cluster port (7947)") {
				t.Errorf("%v (reset %v): exit %d, stderr %q: want the hint that this is not an admin address", args, reset, code, errs)
			}
		}
		ln.Close()
	}
	if code, _, errs := cli("status", "127.0.0.1:1"); code != 1 || strings.Contains(errs, "gossip port") {
		t.Errorf("a refused connection: exit %d, stderr %q: want no hint", code, errs)
	}
}

// TestFlagsBeforeSubcommand: "config --admin A get" and "cache --admin A
// stats" run as with the flags after the subcommand, as flags may come
// before or after the arguments of every other command. They were refused
// as the unknown subcommand "--admin".
func TestFlagsBeforeSubcommand(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/config":
			io.WriteString(w, `{"version":3,"hash":"sha256:ab","content":"routes: []\n"}`)
		default:
			io.WriteString(w, `{"nodes":[]}`)
		}
	}))
	defer srv.Close()
	for _, args := range [][]string{
		{"config", "--admin", srv.URL, "get"},
		{"config", "--admin", srv.URL, "--json", "get"},
		{"cache", "--admin", srv.URL, "stats"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Errorf("%v: exit %d: %s", args, code, errb.String())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"/v1/config", "/v1/config", "/v1/cache/stats"}; !slices.Equal(paths, want) {
		t.Errorf("requests %v, want %v", paths, want)
	}
}

// TestAdminAddressMistakes: an operator's slips in ADMIN said what went
// wrong but not what to do. A bare host ("status 10.0.0.2") was sent to
// port 80 and answered "connection refused" (or a proxy listener's page);
// a port past 65535 reached the dialer; https:// to the plain-HTTP admin
// API said only "server gave HTTP response to HTTPS client"; and a refused
// connection did not say that the admin API may be on loopback. Each is
// now refused before anything is sent (exit 2, with the usage), or told
// what to check.
func TestAdminAddressMistakes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "10.0.0.2"}, `"10.0.0.2" has no port: give the node's admin address as host:port (10.0.0.2:9090 with the default admin port)`},
		{[]string{"members", "--admin", "localhost"}, `(localhost:9090 with the default admin port)`},
		{[]string{"config", "get", "--admin", "10.0.0.2:99999"}, `"10.0.0.2:99999" is not an admin address: port "99999" is not a number from 1 to 65535`},
		{[]string{"leave", "http://10.0.0.2:0"}, `port "0" is not a number from 1 to 65535`},
	} {
		code, out, errs := cli(tc.args...)
		if code != 2 || out != "" || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "usage: pingora-node") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errs, tc.want)
		}
	}
	// A URL with a scheme and no port is the user's choice (a proxy in
	// front of the admin API): it is dialled.
	if code, _, errs := cli("status", "http://127.0.0.1"); code != 1 || strings.Contains(errs, "has no port") {
		t.Errorf("status http://127.0.0.1: exit %d, stderr %q; want it dialled (exit 1)", code, errs)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	if code, _, errs := cli("status", addr); code != 1 || !strings.Contains(errs, "connection refused") ||
		!strings.Contains(errs, "nothing listens there: is the node running, and is this its admin_addr?") {
		t.Errorf("status at a closed port: exit %d, stderr %q; want the hint", code, errs)
	}

	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(plain.Close)
	https := strings.Replace(plain.URL, "http://", "https://", 1)
	for _, args := range [][]string{{"status", https}, {"config", "get", "--admin", https}} {
		if code, _, errs := cli(args...); code != 1 || !strings.Contains(errs, "the admin API speaks plain HTTP: give the address as host:port or http://host:port") {
			t.Errorf("%v: exit %d, stderr %q; want the plain-HTTP hint", args, code, errs)
		}
	}
}
