package consensus

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestAdvertiseAddr(t *testing.T) {
	t.Parallel()
	cases := []struct{ advertise, bound, want string }{
		{"", "127.0.0.1:7947", "127.0.0.1:7947"},
		{"", "0.0.0.0:7947", "error: raft is bound to 0.0.0.0:7947, which other servers cannot dial: set Advertise"},
		{"", "[::]:7947", "error: which other servers cannot dial"},
		{"10.0.0.5:0", "[::]:41234", "10.0.0.5:41234"},
		{"10.0.0.5:7000", "[::]:41234", "10.0.0.5:7000"},
		{"raft-0.pingora.svc:7947", "0.0.0.0:7947", "raft-0.pingora.svc:7947"},
		{"[fd00::5]:0", "[::]:7947", "[fd00::5]:7947"},
		{"0.0.0.0:7947", "0.0.0.0:7947", "error: Advertise \"0.0.0.0:7947\" is a wildcard address"},
		{"10.0.0.5", "0.0.0.0:7947", "error: Advertise \"10.0.0.5\" is not host:port"},
	}
	for _, tc := range cases {
		got, err := advertiseAddr(tc.advertise, tc.bound)
		if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("advertiseAddr(%q, %q) = %q, %v; want error %q", tc.advertise, tc.bound, got, err, want)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("advertiseAddr(%q, %q) = %q, %v; want %q", tc.advertise, tc.bound, got, err, tc.want)
		}
	}
}

// TestStoreAdvertises: a server bound to every address on a free port is
// known to raft (its own configuration) at the advertised host and the
// bound port; without Advertise, it refuses to start.
func TestStoreAdvertises(t *testing.T) {
	cfg := DefaultLocalConfig()
	cfg.ID, cfg.DataDir, cfg.BootstrapExpect = "solo", t.TempDir(), 1
	cfg.BindAddr, cfg.Advertise = "0.0.0.0:0", "127.0.0.1:0"
	cfg.Logger = testLogger(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.Addr() == "127.0.0.1:0" {
		t.Fatalf("Addr() = %q", s.Addr())
	}
	waitFor(t, 10*time.Second, "a leader", s.IsLeader)
	if _, addr := s.Leader(); addr != s.Addr() {
		t.Fatalf("leader address %q, want %q", addr, s.Addr())
	}

	cfg.DataDir, cfg.Advertise = t.TempDir(), ""
	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot dial: set Advertise") {
		t.Fatalf("Start on a wildcard without Advertise: %v", err)
	}
}
