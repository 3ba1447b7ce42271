package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/node"
	"github.com/pingora-go/pingora-go/sharedcache"
)

// TestStatusShowsCache: status prints the cache's fill and hit ratio, and
// what an upgrade's successor inherited (a cut stream stands out), which
// were only in /status's JSON.
func TestStatusShowsCache(t *testing.T) {
	for _, tc := range []struct {
		c    *node.CacheStatus
		want []string
	}{
		{&node.CacheStatus{Objects: 3, Bytes: 3 << 10, MaxBytes: 256 << 20},
			[]string{"cache     3 objects, 3.0 KiB of 256.0 MiB\n"}},
		{&node.CacheStatus{Objects: 40, Bytes: 80 << 10, MaxBytes: 16 << 20, HitRatio: 0.975, Lookups: 1200,
			Inherited: &sharedcache.InheritStats{State: "done", Objects: 40, Bytes: 80 << 10, Seconds: 0.0012}},
			[]string{"cache     40 objects, 80.0 KiB of 16.0 MiB, hit ratio 0.97 over 1200 lookups in the last minute\n",
				"          inherited from the previous process: 40 objects (80.0 KiB) in 0.0 s\n"}},
		{&node.CacheStatus{Inherited: &sharedcache.InheritStats{State: "cut", Objects: 7, Bytes: 700, Skipped: 2, Seconds: 30, Error: "deadline"}},
			[]string{"inherited from the previous process: 7 objects (700 B), stream CUT after 30.0 s (what arrived is kept), 2 skipped: deadline\n"}},
		{&node.CacheStatus{Inherited: &sharedcache.InheritStats{State: "receiving", Objects: 1, Seconds: 0.5}},
			[]string{"1 objects (0 B), receiving for 0.5 s\n"}},
	} {
		var out bytes.Buffer
		printStatus(&out, &node.Status{Cache: tc.c}, "")
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("status lacks %q:\n%s", w, out.String())
			}
		}
	}
	var out bytes.Buffer
	printStatus(&out, &node.Status{}, "")
	if strings.Contains(out.String(), "cache ") {
		t.Errorf("a status without a cache section printed one:\n%s", out.String())
	}
}
