package errjoin

import (
	"errors"
	"fmt"
	"testing"
)

func TestLeaves(t *testing.T) {
	a, b, c := errors.New("a"), errors.New("b"), errors.New("c")
	for _, tc := range []struct {
		name string
		err  error
		want []error
	}{
		{"nil", nil, nil},
		{"plain", a, []error{a}},
		{"joined", errors.Join(a, b), []error{a, b}},
		{"nested and wrapped", fmt.Errorf("doc: %w", errors.Join(a, errors.Join(b, c))), []error{a, b, c}},
	} {
		got := Leaves(tc.err)
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %v, want %v", tc.name, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("%s: [%d] = %v, want %v", tc.name, i, got[i], tc.want[i])
			}
		}
	}
}
