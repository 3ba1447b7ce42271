package sharedcache

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"zero", Config{}, ""},
		{"defaults", DefaultConfig(), ""},
		{"negative bytes", Config{MaxBytes: -1}, "MaxBytes"},
		{"negative timeout", Config{OwnerTimeout: -time.Second}, "OwnerTimeout"},
		{"object over max", Config{MaxBytes: 1 << 20, MaxObjectBytes: 2 << 20}, "MaxObjectBytes"},
		{"hot over max", Config{MaxBytes: 1 << 20, HotBytes: 2 << 20}, "HotBytes"},
		{"purge log over a frame", Config{PurgeLogBytes: 9 << 20}, "PurgeLogBytes"},
		{"negative purge log age", Config{PurgeLogAge: -time.Hour}, "PurgeLogAge"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
				t.Fatalf("Validate = %v, want %q", err, c.err)
			}
		})
	}
}
