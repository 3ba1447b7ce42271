package membership

import (
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

// TestReapAfter (issue 12): a failed or departed member stays listed until
// ReapAfter has passed since it went, then is forgotten; live members stay.
func TestReapAfter(t *testing.T) {
	t.Parallel()
	fc := clock.NewFake(time.Unix(1_000_000, 0))
	c, err := New(Config{Name: "x", BindAddr: "127.0.0.1:0", Clock: fc, ReapAfter: time.Hour, Logger: newLogSink(t).logger()})
	if err != nil {
		t.Fatal(err)
	}
	t0 := fc.Now()
	c.members["dead"] = &Member{Name: "dead", State: Dead, LastChange: t0}
	c.members["left"] = &Member{Name: "left", State: Left, LastChange: t0.Add(30 * time.Minute)}
	c.members["alive"] = &Member{Name: "alive", State: Alive, LastChange: t0}
	listed := func() (out []string) {
		for _, m := range c.Members() {
			out = append(out, m.Name)
		}
		return out
	}
	for _, tc := range []struct {
		at   time.Duration
		want string
	}{
		{59 * time.Minute, "[alive dead left]"},
		{time.Hour, "[alive left]"},
		{90 * time.Minute, "[alive]"},
		{1000 * time.Hour, "[alive]"},
	} {
		fc.Advance(t0.Add(tc.at).Sub(fc.Now()))
		c.expire()
		if got := strings.Join(listed(), " "); "["+got+"]" != tc.want {
			t.Errorf("after %s: members [%s], want %s", tc.at, got, tc.want)
		}
	}
	if d := (Config{}).withDefaults().ReapAfter; d != 24*time.Hour {
		t.Errorf("default ReapAfter %s, want 24h", d)
	}
	if err := (Config{Name: "x", ReapAfter: -time.Second}).Validate(); err == nil || !strings.Contains(err.Error(), "ReapAfter") {
		t.Errorf("negative ReapAfter: %v", err)
	}
}
