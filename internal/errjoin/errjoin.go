// Package errjoin flattens joined errors, for validators that report
// every bad field of a document as one error (errors.Join) and callers
// that list them one by one.
package errjoin

import "errors"

// Leaves returns the errors joined (errors.Join, at any depth) in err's
// chain, or err alone when nothing in it is joined; nil for nil.
func Leaves(err error) []error {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		if err == nil {
			return nil
		}
		return []error{err}
	}
	var out []error
	for _, x := range joined.Unwrap() {
		out = append(out, Leaves(x)...)
	}
	return out
}
