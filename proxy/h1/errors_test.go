package h1

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestHeaderTooLargeError(t *testing.T) {
	r := NewReader(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: a\r\nX: "+strings.Repeat("y", 100)+"\r\n\r\n")), Limits{MaxHeaderBytes: 64})
	var req Request
	err := r.ReadRequest(&req)
	if !errors.Is(err, ErrHeaderTooLarge) || StatusOf(err) != 431 {
		t.Fatalf("ReadRequest: %v (status %d), want ErrHeaderTooLarge, 431", err, StatusOf(err))
	}
	if got := err.Error(); got != "h1: header too large (status 431)" {
		t.Fatalf("Error() = %q", got)
	}
}
