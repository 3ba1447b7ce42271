// Package suggest finds what a user meant by a mistyped word: a flag, a
// command, a config key.
package suggest

import "strings"

// Distance is the Levenshtein distance of a and b: the fewest one-byte
// insertions, deletions and substitutions that turn one into the other.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Closest returns the word of known closest to typed (compared in lower
// case): at most two edits away, or one that typed begins; "" when none is.
func Closest(typed string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		d := Distance(strings.ToLower(typed), k)
		if strings.HasPrefix(k, typed) && typed != "" {
			d = 1
		}
		if d < bestD {
			best, bestD = k, d
		}
	}
	return best
}
