package logtest

import "testing"

// TestLinesEmpty: a buffer nothing was written to has no lines. It once
// had one empty line, so TestCacheStatusInAccessLog's wait for the first
// access record passed at once and its next request could log first.
func TestLinesEmpty(t *testing.T) {
	var b Buffer
	if got := b.Lines(); len(got) != 0 {
		t.Fatalf("Lines() of an empty buffer = %q, want none", got)
	}
	b.Write([]byte("one\ntwo\n"))
	if got := b.Lines(); len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Fatalf("Lines() = %q, want [one two]", got)
	}
}
