package cginame

import "testing"

func TestSame(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"X-Tenant", "X_Tenant", true},
		{"X-Tenant", "x-tenant", true},
		{"X-Tenant", "X_TENANT", true},
		{"X-Tenant", "X-Tenant", true},
		{"X-Tenant", "X-Tenan", false},
		{"X-Tenant", "X.Tenant", false},
		{"X-Tenant", "Y-Tenant", false},
		{"", "", true},
	} {
		if got := Same(c.a, c.b); got != c.want {
			t.Errorf("Same(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
