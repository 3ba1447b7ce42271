package main

import (
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestStayAsInit: with two children (an old generation still draining and
// the newest, serving one), stayAsInit forwards a signal to the newest
// only, reaps it, forwards the next signal to the one left, and returns
// its exit code once no child is left.
func TestStayAsInit(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Skip("cannot start sleep:", err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		return cmd
	}
	// Started in the same clock tick, the higher pid is the newer.
	older := start()
	newer := start()
	sigs := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() { done <- stayAsInit(sigs, io.Discard) }()

	sigs <- syscall.SIGTERM
	waitFor(t, "the newest child gone", func() bool { return syscall.Kill(newer.Process.Pid, 0) != nil })
	if syscall.Kill(older.Process.Pid, 0) != nil {
		t.Fatal("the older child got the signal too")
	}
	select {
	case code := <-done:
		t.Fatalf("returned %d with a child left", code)
	default:
	}
	sigs <- syscall.SIGINT
	select {
	case code := <-done:
		if code != 128+int(syscall.SIGINT) {
			t.Fatalf("exit code %d, want %d (the last child's)", code, 128+int(syscall.SIGINT))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stayAsInit did not return once no child was left")
	}
}
