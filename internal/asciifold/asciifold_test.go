package asciifold

import (
	"strings"
	"testing"
)

func TestHasPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s, prefix string
		want      bool
	}{
		{"/ADMIN/x", "/admin", true},
		{"/admin", "/AdMiN", true},
		{"/adm", "/admin", false},
		{"/admix", "/admin", false},
		{"/\u212a", "/k", false}, // strings.EqualFold says true
		{"/[", "/{", false},      // '[' is 'Z'+1, '{' is 'z'+1: not letters
		{"/@", "/`", false},
		{"/%C3%A9", "/%c3%a9", true}, // hex digits are letters too
		{"", "", true},
		{"/x", "", true},
	} {
		if got := HasPrefix(tc.s, tc.prefix); got != tc.want {
			t.Errorf("HasPrefix(%q, %q) = %v, want %v", tc.s, tc.prefix, got, tc.want)
		}
	}
	// Every pair of bytes: equal under HasPrefix exactly when equal
	// under ASCII case folding.
	for a := 0; a < 256; a++ {
		for b := 0; b < 256; b++ {
			sa, sb := string([]byte{byte(a)}), string([]byte{byte(b)})
			want := a == b || a < 128 && b < 128 && strings.EqualFold(sa, sb)
			if got := HasPrefix(sa, sb); got != want {
				t.Fatalf("HasPrefix(%#x, %#x) = %v, want %v", a, b, got, want)
			}
		}
	}
}

func TestLower(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"/Admin/%C3%A9": "/admin/%c3%a9", "/x": "/x", "\u212a": "\u212a", "": ""} {
		if got := Lower(in); got != want {
			t.Errorf("Lower(%q) = %q, want %q", in, got, want)
		}
	}
}
