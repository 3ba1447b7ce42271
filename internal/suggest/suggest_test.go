package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"join", "join", 0},
		{"bootstrap_expcet", "bootstrap_expect", 2},
		{"admn", "admin", 1},
		{"kitten", "sitting", 3},
	} {
		if got := Distance(c.a, c.b); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := Distance(c.b, c.a); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.b, c.a, got, c.want)
		}
	}
}

func TestClosest(t *testing.T) {
	known := []string{"purge", "stats", "status"}
	for typed, want := range map[string]string{
		"purg":   "purge",
		"STATS":  "stats",
		"stat":   "stats",
		"statsu": "stats",
		"xyz":    "",
		"":       "",
	} {
		if got := Closest(typed, known); got != want {
			t.Errorf("Closest(%q) = %q, want %q", typed, got, want)
		}
	}
}
