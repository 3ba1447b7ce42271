package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// successorExit is the exit code of the last successor that startSuccessor's
// goroutine reaped (it may reap the direct child before stayAsInit does).
var successorExit atomic.Int32

// stayAsInit keeps the process alive after a hand-off when it is PID 1, as
// the node is in a container: when PID 1 exits the kernel kills every
// process of its PID namespace, the successor included, and the container
// stops (found by chaos/run.sh upgrade). It stays until no child is left:
// it reaps its children (the successor, and the processes reparented to it
// when an intermediate generation of a chain of upgrades exits), forwards
// SIGTERM, SIGINT, SIGHUP and SIGUSR2 to the newest one, the process that
// serves, and returns the exit code of the last one.
func stayAsInit(sigs <-chan os.Signal, stderr io.Writer) int {
	fmt.Fprintln(stderr, "pingora-node: handed off as PID 1: staying as the init process while the successor runs")
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	code := 0
	seen := map[int]bool{}
	for {
		live, reaped := reapChildren(os.Getpid())
		for pid := range seen {
			if _, ok := reaped[pid]; ok {
				code = reaped[pid]
			} else if !contains(live, pid) {
				code = int(successorExit.Load()) // reaped by startSuccessor's goroutine
			}
		}
		seen = map[int]bool{}
		for _, c := range live {
			seen[c.pid] = true
		}
		if len(live) == 0 {
			return code
		}
		select {
		case sig := <-sigs:
			newest := live[0]
			for _, c := range live[1:] {
				if c.start > newest.start || (c.start == newest.start && c.pid > newest.pid) {
					newest = c
				}
			}
			if s, ok := sig.(syscall.Signal); ok {
				fmt.Fprintf(stderr, "pingora-node: forwarding %v to pid %d\n", sig, newest.pid)
				syscall.Kill(newest.pid, s)
			}
		case <-tick.C:
		}
	}
}

// child is a process whose parent is this one.
type child struct {
	pid   int
	start uint64 // clock ticks after boot
}

func contains(cs []child, pid int) bool {
	for _, c := range cs {
		if c.pid == pid {
			return true
		}
	}
	return false
}

// reapChildren lists the children of ppid from /proc, reaping those that
// exited (zombies): it returns the live ones and the exit codes of the
// reaped ones.
func reapChildren(ppid int) ([]child, map[int]int) {
	ents, _ := os.ReadDir("/proc")
	var live []child
	reaped := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... starttime (the 22nd field): comm may
		// hold spaces and parentheses, so split after the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b)[i+1:])
		if len(f) < 20 {
			continue
		}
		if p, _ := strconv.Atoi(f[1]); p != ppid {
			continue
		}
		if f[0] == "Z" {
			var ws syscall.WaitStatus
			if got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); err == nil && got == pid {
				reaped[pid] = exitCode(ws)
			}
			continue
		}
		start, _ := strconv.ParseUint(f[19], 10, 64)
		live = append(live, child{pid: pid, start: start})
	}
	return live, reaped
}

func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
