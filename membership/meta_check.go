package membership

import "github.com/pingora-go/pingora-go/internal/msgpackx"

// checkLengths refuses msgpack declaring lengths beyond its bytes, before
// msgpack allocates for them (msgpackx.CheckLengths).
func checkLengths(b []byte) error { return msgpackx.CheckLengths(b) }
