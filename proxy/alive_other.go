//go:build !unix

package proxy

import "syscall"

// peekAlive cannot check without blocking here; a stale connection is
// caught by the retry on a reused connection instead.
func peekAlive(rc syscall.RawConn) bool { return true }

type peeker struct{}

func (p *peeker) init(rc syscall.RawConn) {}

func (p *peeker) alive() bool { return true }
