package nodeflags

import (
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"flags and env", []string{"run", "--listen=0.0.0.0:8080", "--join", "peers:7946", "--data-dir=/data", "--admin-addr=0.0.0.0:9090"},
			map[string]string{"PINGORA_ADMIN_TOKEN": "t", "PINGORA_ADVERTISE_ADDR": "10.0.0.7"}, ""},
		{"not run", []string{"demo"}, nil, "want run"},
		{"unknown flag", []string{"run", "--listen=:8080", "--cluster-config=c.yaml", "--bogus=1"}, nil, "flag provided but not defined: -bogus"},
		{"stray argument", []string{"run", "--listen=:8080", "--cluster-config=c.yaml", "extra"}, nil, "unexpected arguments"},
		{"unknown variable", []string{"run", "--listen=:8080", "--cluster-config=c.yaml"}, map[string]string{"PINGORA_JION": "x:1"}, "PINGORA_JION is not a setting"},
		{"refused value", []string{"run", "--listen=:8080", "--cluster-config=c.yaml", "--bootstrap-expect=9"}, nil, "bootstrap_expect"},
		{"admin beyond loopback needs a token", []string{"run", "--listen=:8080", "--join=p:7946", "--data-dir=/d", "--admin-addr=0.0.0.0:9090"},
			map[string]string{"PINGORA_ADVERTISE_ADDR": "10.0.0.7"}, "admin_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n, err := Load(tc.args, tc.env, "pod-0")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if n.Name != "pod-0" || n.GossipAddr != "0.0.0.0:7946" || n.ClusterAddr != "0.0.0.0:7947" || n.RaftAddr != "" {
					t.Fatalf("name %q gossip %q cluster %q raft %q", n.Name, n.GossipAddr, n.ClusterAddr, n.RaftAddr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
