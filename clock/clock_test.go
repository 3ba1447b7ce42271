package clock

import (
	"fmt"
	"testing"
	"time"
)

func TestFakeTickerAndTimer(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	tk := f.NewTicker(time.Second)
	tm := f.NewTimer(1500 * time.Millisecond)
	f.Advance(time.Second)
	select {
	case <-tk.C():
	default:
		t.Fatal("ticker did not fire at 1s")
	}
	select {
	case <-tm.C():
		t.Fatal("timer fired early")
	default:
	}
	f.Advance(time.Second)
	<-tm.C()
	<-tk.C()
	if tm.Stop() {
		t.Fatal("Stop on a fired timer reported active")
	}
	tm.Reset(time.Second)
	if f.Waiters() != 2 {
		t.Fatalf("waiters = %d, want 2", f.Waiters())
	}
	tk.Stop()
	if f.Waiters() != 1 {
		t.Fatalf("waiters after Stop = %d, want 1", f.Waiters())
	}
}

func TestFakeAfterFunc(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	done := make(chan struct{})
	f.AfterFunc(time.Second, func() { close(done) })
	stopped := f.AfterFunc(time.Second, func() { t.Error("stopped AfterFunc ran") })
	if !stopped.Stop() {
		t.Fatal("Stop on a pending AfterFunc reported inactive")
	}
	f.Advance(999 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("ran early")
	default:
	}
	f.Advance(time.Millisecond)
	<-done
}

func ExampleFake() {
	f := NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	tm := f.NewTimer(time.Minute)
	f.Advance(time.Minute)
	fmt.Println((<-tm.C()).Format(time.TimeOnly))
	// Output: 00:01:00
}
