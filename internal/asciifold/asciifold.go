// Package asciifold compares strings without regard to the case of ASCII
// letters, every other byte as it is: unlike strings.EqualFold, it does not
// take "\u212a" (the Kelvin sign) for "k", so a case-insensitive path rule
// matches what an origin that folds ASCII case serves, and no more. The
// router's and the rate limiter's case_insensitive path prefixes use it.
package asciifold

// HasPrefix reports whether s begins with prefix, ASCII letters compared
// without case.
func HasPrefix(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if a, b := s[i], prefix[i]; a != b && (lower(a) != lower(b) || !isLetter(a)) {
			return false
		}
	}
	return true
}

// Lower returns s with its ASCII letters in lower case.
func Lower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = lower(b[j])
			}
			return string(b)
		}
	}
	return s
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isLetter(c byte) bool { c = lower(c); return 'a' <= c && c <= 'z' }
