package ratelimit

import (
	"testing"
	"time"
)

func TestSlideRoll(t *testing.T) {
	t.Parallel()
	w := slide{idx: 5, prev: 10, curr: 20}
	w.roll(5)
	if w != (slide{5, 10, 20}) {
		t.Fatalf("roll to the same window changed it: %+v", w)
	}
	w.roll(6)
	if w != (slide{6, 20, 0}) {
		t.Fatalf("roll by one: %+v", w)
	}
	w.curr = 7
	w.roll(9)
	if w != (slide{9, 0, 0}) {
		t.Fatalf("roll by three: %+v", w)
	}
	w.roll(3)
	if w.idx != 9 {
		t.Fatal("roll went back")
	}
	a := slide{idx: 10, prev: 5, curr: 8}
	a.maxMerge(slide{idx: 11, prev: 3, curr: 4}) // a rolls to {11, 8, 0}
	if a != (slide{11, 8, 4}) {
		t.Fatalf("maxMerge: %+v", a)
	}
	b := slide{idx: 11, prev: 1, curr: 1}
	b.add(slide{idx: 10, prev: 100, curr: 2}) // the older rolls to {11, 2, 0}
	if b != (slide{11, 3, 1}) {
		t.Fatalf("add: %+v", b)
	}
	if got := (&slide{prev: 100, curr: 50}).count(0.25); got != 125 {
		t.Fatalf("count = %v, want 125", got)
	}
}

func TestSlideRetry(t *testing.T) {
	t.Parallel()
	p := time.Second
	for _, tc := range []struct {
		name                string
		prev, curr, f, room float64
		want                time.Duration
	}{
		{"fits now", 100, 100, 0.5, 200, 0},
		{"prev decays", 1000, 0, 0.5, 400, 100 * time.Millisecond},
		{"curr alone too big", 0, 1000, 0.5, 500, time.Second},
		{"no prev", 0, 10, 0.2, 20, 0},
	} {
		if got := slideRetry(tc.prev, tc.curr, tc.f, tc.room, p); got < tc.want-time.Millisecond || got > tc.want+time.Millisecond {
			t.Errorf("%s: slideRetry = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestWindowAt(t *testing.T) {
	t.Parallel()
	idx, f := windowAt(int64(10*time.Second+250*time.Millisecond), time.Second)
	if idx != 10 || f != 0.25 {
		t.Fatalf("windowAt = %d, %v", idx, f)
	}
}

func TestGCRA(t *testing.T) {
	t.Parallel()
	var g gcra
	interval := float64(time.Millisecond) // 1,000/s
	now := int64(time.Hour)
	for i := 0; i < 5; i++ {
		if ok, _ := g.allow(now, 1, interval, 5); !ok {
			t.Fatalf("request %d of a burst of 5 refused", i)
		}
	}
	ok, retry := g.allow(now, 1, interval, 5)
	if ok || retry != time.Millisecond {
		t.Fatalf("sixth: ok=%v retry=%v, want refused for 1ms", ok, retry)
	}
	if left := g.left(now, interval, 5); left != 0 {
		t.Fatalf("left = %d", left)
	}
	now += int64(3 * time.Millisecond)
	if left := g.left(now, interval, 5); left != 3 {
		t.Fatalf("left after 3ms = %d, want 3", left)
	}
	if ok, _ := g.allow(now, 3, interval, 5); !ok {
		t.Fatal("a cost of 3 refused with 3 tokens")
	}
}

func TestBucket(t *testing.T) {
	t.Parallel()
	b := bucket{tokens: 0, at: 0}
	if got := b.level(int64(500*time.Millisecond), 1e-6, 200); got != 200 {
		t.Fatalf("level = %v, want capped at 200", got)
	}
	if d := bucketRetry(0.5, 1, 1e-6); d != 500*time.Microsecond {
		t.Fatalf("bucketRetry = %v", d)
	}
}
