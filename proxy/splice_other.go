//go:build !linux

package proxy

import "syscall"

// spliceBody is splice(2)'s relay on Linux; elsewhere bodies are copied.
func spliceBody(dst, src syscall.RawConn, n int64, _ *sendMeter, before func(spliceSide)) (written int64, handled bool, fail *spliceErr) {
	return 0, false, nil
}
