package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))

	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	limited := func() (int64, bool) { return 1 << 30, true }
	if gogc, lim := tuneGC(getenv, limited); gogc != defaultGOGC || lim != (1<<30)*9/10 {
		t.Fatalf("defaults: GOGC %d, limit %d", gogc, lim)
	}
	if got := debug.SetGCPercent(100); got != defaultGOGC {
		t.Fatalf("GC percent %d", got)
	}
	env["GOGC"], env["GOMEMLIMIT"] = "50", "1GiB"
	if gogc, lim := tuneGC(getenv, limited); gogc != 0 || lim != 0 {
		t.Fatalf("the environment must win: GOGC %d, limit %d", gogc, lim)
	}
	delete(env, "GOMEMLIMIT")
	if _, lim := tuneGC(getenv, func() (int64, bool) { return 0, false }); lim != 0 {
		t.Fatalf("no cgroup limit, yet limit %d", lim)
	}
	for in, want := range map[string]int64{"max\n": 0, "": 0, "garbage": 0, "-1": 0, "1073741824\n": 1 << 30} {
		if got, _ := parseMemoryMax(in); got != want {
			t.Errorf("parseMemoryMax(%q) = %d, want %d", in, got, want)
		}
	}
}
