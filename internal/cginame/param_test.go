package cginame

import "testing"

func TestParamName(t *testing.T) {
	for _, c := range []struct{ raw, want string }{
		{"api_key", "api_key"},
		{"API_KEY", "api_key"},
		{"api%5Fkey", "api_key"},
		{"api.key", "api_key"},
		{"api key", "api_key"},
		{"api+key", "api_key"},
		{" api_key ", "api_key"},
		{"%20api_key", "api_key"},
		{"api_key[]", "api_key"},
		{"api_key[0]", "api_key"},
		{"[x]", "[x]"},
		{"ap%zz", "ap%zz"},
	} {
		if got := ParamName(c.raw); got != c.want {
			t.Errorf("ParamName(%q) = %q, want %q", c.raw, got, c.want)
		}
		// SameParam agrees with ParamName, the fast path and the slow.
		if !SameParam(c.raw, c.want) {
			t.Errorf("SameParam(%q, %q) = false", c.raw, c.want)
		}
	}
	for _, c := range []struct{ raw, form string }{
		{"api_keys", "api_key"}, {"apikey", "api_key"}, {"api-key", "api_key"}, {"", "api_key"}, {"x", ""},
	} {
		if SameParam(c.raw, c.form) {
			t.Errorf("SameParam(%q, %q) = true", c.raw, c.form)
		}
	}
	if n := testing.AllocsPerRun(100, func() { SameParam(" API.Key[] ", "api_key") }); n != 0 {
		t.Errorf("SameParam allocates %v times for a plain name", n)
	}
}
