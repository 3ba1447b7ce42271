package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultGOGC is the GC target a node runs with unless GOGC is set. A
// proxy's heap is small (tens of MiB: connection buffers are pooled) and
// most of what it allocates dies within a request, so collecting half as
// often costs little memory: at GOGC=200 the heap peaks at three times the
// live data instead of twice. bench/RESULTS.md has the figures.
const defaultGOGC = 200

// memoryLimitShare is the part of a cgroup memory limit given to the Go
// runtime as its soft limit (GOMEMLIMIT) unless GOMEMLIMIT is set, so the
// higher GOGC never pushes a container into the OOM killer: near the
// limit the collector runs as often as it must.
const memoryLimitShare = 0.9

// tuneGC applies the defaults above; it returns what it set, for the log.
func tuneGC(getenv func(string) string, cgroupMax func() (int64, bool)) (gogc int, memLimit int64) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
		gogc = defaultGOGC
	}
	if getenv("GOMEMLIMIT") == "" {
		if limit, ok := cgroupMax(); ok {
			memLimit = int64(float64(limit) * memoryLimitShare)
			debug.SetMemoryLimit(memLimit)
		}
	}
	return gogc, memLimit
}

// cgroupMemoryMax reads the cgroup v2 memory limit of this process
// ("max", or no cgroup v2, means none).
func cgroupMemoryMax() (int64, bool) {
	b, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return 0, false
	}
	return parseMemoryMax(string(b))
}

func parseMemoryMax(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "max" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
