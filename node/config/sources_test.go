package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// flags turns "--name=v" pairs into command-line overrides.
func flags(kv ...string) []Override {
	var out []Override
	for _, s := range kv {
		k, v, _ := strings.Cut(strings.TrimPrefix(s, "--"), "=")
		st := settingByFlag(k)
		out = append(out, Override{Key: st.Key, Value: v, Source: "flag --" + k})
	}
	return out
}

func settingByFlag(flag string) Setting {
	for _, st := range Settings {
		if st.Flag == flag {
			return st
		}
	}
	panic("no flag " + flag)
}

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

func writeNodeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func hostname(name string) func() (string, error) {
	return func() (string, error) { return name, nil }
}

// TestLoadOrder: the file, then the environment, then the flags; each
// layer's list replaces the one below, and a flag repeated appends.
func TestLoadOrder(t *testing.T) {
	t.Parallel()
	file := writeNodeFile(t, "name: from-file\nlisteners: [{name: http, addr: 127.0.0.1:8080}]\ncluster_config: c.yaml\njoin: [a:1]\nlog_level: warn\n")
	cases := []struct {
		name        string
		src         Sources
		wantName    string
		wantJoin    []string
		wantLevel   string
		wantListens []string
	}{
		{"file only", Sources{File: file}, "from-file", []string{"a:1"}, "warn", []string{"http=127.0.0.1:8080"}},
		{"environment over file", Sources{File: file, Env: envOf("PINGORA_NAME=from-env", "PINGORA_JOIN=b:1, c:1")},
			"from-env", []string{"b:1", "c:1"}, "warn", []string{"http=127.0.0.1:8080"}},
		{"flags over environment", Sources{File: file, Env: envOf("PINGORA_NAME=from-env", "PINGORA_JOIN=b:1", "PINGORA_LOG_LEVEL=debug"),
			Flags: flags("--name=from-flag", "--join=d:1", "--join=e:1", "--listen=127.0.0.1:8081", "--listen=127.0.0.1:8082")},
			"from-flag", []string{"d:1", "e:1"}, "debug", []string{"listen-1=127.0.0.1:8081", "listen-2=127.0.0.1:8082"}},
		{"no file, flags only", Sources{Flags: flags("--name=n2", "--listen=0.0.0.0:8080", "--data-dir=d", "--join=seed:7946", "--admin-addr=127.0.0.1:9091")},
			"n2", []string{"seed:7946"}, "info", []string{"listen-1=0.0.0.0:8080"}},
		{"no file, environment only", Sources{Env: envOf("PINGORA_LISTEN=127.0.0.1:1,127.0.0.1:2", "PINGORA_CLUSTER_CONFIG=c.yaml")},
			"host-1", nil, "info", []string{"listen-1=127.0.0.1:1", "listen-2=127.0.0.1:2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.src.Hostname = hostname("host-1")
			n, err := Load(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			var ls []string
			for _, l := range n.Listeners {
				ls = append(ls, l.Name+"="+l.Addr)
				if l.Name != "http" && !l.H2C {
					t.Fatalf("--listen %s does not serve h2c", l.Addr)
				}
			}
			if n.Name != tc.wantName || !reflect.DeepEqual(n.Join, tc.wantJoin) || n.LogLevel != tc.wantLevel || !reflect.DeepEqual(ls, tc.wantListens) {
				t.Fatalf("name %q join %q level %q listeners %q", n.Name, n.Join, n.LogLevel, ls)
			}
		})
	}
}

func TestLoadPaths(t *testing.T) {
	t.Parallel()
	file := writeNodeFile(t, "listeners: [{name: http, addr: 127.0.0.1:8080}]\ndata_dir: from-file\n")
	n, err := Load(Sources{File: file, Hostname: hostname("h")})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Path(n.DataDir); got != filepath.Join(filepath.Dir(file), "from-file") {
		t.Fatalf("file data_dir resolved to %q", got)
	}
	n, err = Load(Sources{File: file, Flags: flags("--data-dir=rel"), Hostname: hostname("h")})
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if got := n.Path(n.DataDir); got != filepath.Join(wd, "rel") {
		t.Fatalf("flag data_dir resolved to %q, want it relative to the working directory", got)
	}
}

// TestLoadErrorsNameTheSource: a bad value is reported with what set it.
func TestLoadErrorsNameTheSource(t *testing.T) {
	t.Parallel()
	file := writeNodeFile(t, "name: bad name\nlisteners: [{name: http, addr: 127.0.0.1:8080}]\ncluster_config: c.yaml\nlog_level: loud\n")
	good := writeNodeFile(t, "listeners: [{name: http, addr: 127.0.0.1:8080}]\ncluster_config: c.yaml\n")
	cases := []struct {
		name string
		src  Sources
		want []string // every line of the error, in any order; "" means no error
	}{
		{"file line", Sources{File: file}, []string{`node.yaml:1: name: "bad name" is not a valid node name`, `node.yaml:4: log_level: "loud" is not one of`}},
		{"a flag fixes the file's name", Sources{File: file, Flags: flags("--name=good", "--log-level=info")}, nil},
		{"the environment fixes it too", Sources{File: file, Env: envOf("PINGORA_NAME=good", "PINGORA_LOG_LEVEL=warn")}, nil},
		{"flag", Sources{File: good, Flags: flags("--name=no good")}, []string{`flag --name: name: "no good" is not a valid node name`}},
		{"environment", Sources{File: good, Env: envOf("PINGORA_NAME=no good")}, []string{`PINGORA_NAME: name: "no good"`}},
		{"flag over a bad environment value", Sources{File: good, Env: envOf("PINGORA_NAME=no good"), Flags: flags("--name=ok")}, nil},
		{"host name", Sources{File: good, Hostname: hostname("my_host!")}, []string{`default (the host name): name: "my_host!" is not a valid node name`}},
		{"bootstrap-expect -1", Sources{File: good, Flags: flags("--data-dir=d", "--bootstrap-expect=-1")}, []string{`flag --bootstrap-expect: bootstrap_expect: -1 is not between 0 and 7`}},
		{"not a number", Sources{File: good, Env: envOf("PINGORA_BOOTSTRAP_EXPECT=three")}, []string{`PINGORA_BOOTSTRAP_EXPECT: bootstrap_expect: "three" is not a whole number`}},
		{"listener", Sources{File: good, Flags: flags("--listen=127.0.0.1:8080", "--listen=localhost")}, []string{`flag --listen: listeners[1].addr: "localhost": missing port in address`}},
		{"no listener anywhere", Sources{Flags: flags("--data-dir=d")}, []string{`listeners: at least one listener is required`}},
		{"unreachable raft", Sources{File: good, Env: envOf("PINGORA_JOIN=10.0.0.1:7946", "PINGORA_DATA_DIR=d"), Flags: flags("--raft-addr=127.0.0.1:7947")},
			[]string{`flag --raft-addr: raft_addr: 127.0.0.1:7947 is a loopback address`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.src.Hostname == nil {
				tc.src.Hostname = hostname("h")
			}
			_, err := Load(tc.src)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *Errors
			if !errors.As(err, &ce) || len(ce.List) != len(tc.want) {
				t.Fatalf("got %v; want %d errors", err, len(tc.want))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestSettingsAreUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, st := range Settings {
		for _, k := range []string{"key " + st.Key, "flag " + st.Flag, "env " + st.Env} {
			if seen[k] && !strings.HasSuffix(k, " ") {
				t.Fatalf("%s twice", k)
			}
			seen[k] = true
		}
		if st.Env != "" && !strings.HasPrefix(st.Env, "PINGORA_") {
			t.Fatalf("%s: environment variables start PINGORA_", st.Env)
		}
		if st.Flag != "" && st.Env != "PINGORA_"+strings.ToUpper(strings.ReplaceAll(st.Flag, "-", "_")) {
			t.Fatalf("flag --%s has environment variable %s", st.Flag, st.Env)
		}
	}
}

// TestAdminTokenTrimmed: a token with the newline echo leaves (in the
// environment, as from a secret, or in the file) is taken without it; one
// with whitespace inside, which no client could send, is refused.
func TestAdminTokenTrimmed(t *testing.T) {
	t.Parallel()
	file := writeNodeFile(t, "name: n\nlisteners: [{name: http, addr: 127.0.0.1:8080}]\ncluster_config: c.yaml\nadmin_token: \"s3cret\\n\"\n")
	for _, src := range []Sources{{File: file}, {File: file, Env: envOf("PINGORA_ADMIN_TOKEN= s3cret\n")}} {
		n, err := Load(src)
		if err != nil || n.AdminToken != "s3cret" {
			t.Fatalf("token %q, %v; want s3cret", n.AdminToken, err)
		}
	}
	_, err := Load(Sources{File: file, Env: envOf("PINGORA_ADMIN_TOKEN=s3 cret")})
	if err == nil || !strings.Contains(err.Error(), "admin_token: holds a space") {
		t.Fatalf("token with a space inside: %v", err)
	}
}
