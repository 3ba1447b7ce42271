//go:build linux

// Package evloop is a minimal level-triggered epoll event loop: one Loop
// runs on one locked OS thread and calls a Handler for each ready file
// descriptor registered with it. It is the I/O core of the proxy's
// experimental HTTP/1.1 event-loop listener (see proxy's evloop.go).
//
// Level-triggered, not edge-triggered: a handler reads once per event and
// the kernel reports the descriptor again while bytes remain, so no read
// is spent only to learn EAGAIN (edge-triggered requires reading until
// EAGAIN, the very syscall the loop exists to avoid). Handlers must
// tolerate a spurious event (a read or write that returns EAGAIN).
package evloop

import (
	"errors"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Event bits, as epoll reports them.
const (
	In    = unix.EPOLLIN
	Out   = unix.EPOLLOUT
	RdHup = unix.EPOLLRDHUP
	Hup   = unix.EPOLLHUP
	Err   = unix.EPOLLERR
)

// Handler is told of the events of one descriptor, on the loop's thread.
type Handler interface {
	Event(events uint32)
}

// Loop is one epoll instance and the thread that waits on it. Its methods
// are for the loop's own thread (handlers and the tick), except Close
// once Run returned.
type Loop struct {
	epfd     int
	handlers map[int]Handler
}

// New makes a Loop.
func New() (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &Loop{epfd: epfd, handlers: map[int]Handler{}}, nil
}

// Add registers fd for events with h.
func (l *Loop) Add(fd int, events uint32, h Handler) error {
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)}); err != nil {
		return err
	}
	l.handlers[fd] = h
	return nil
}

// AddExclusive registers a listening fd shared by several loops: one
// incoming connection wakes one of them (EPOLLEXCLUSIVE).
func (l *Loop) AddExclusive(fd int, h Handler) error {
	return l.Add(fd, In|unix.EPOLLEXCLUSIVE, h)
}

// Mod changes the events fd is watched for.
func (l *Loop) Mod(fd int, events uint32) error {
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)})
}

// Del stops watching fd; call it before closing fd.
func (l *Loop) Del(fd int) {
	delete(l.handlers, fd)
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// Run waits for events and calls their handlers until tick returns false.
// tick runs at least every interval, and after each batch of events that
// took longer. The calling goroutine is locked to its thread meanwhile.
//
// After a batch of events the loop polls without waiting first, and
// yields to the scheduler before it blocks (as gnet does): a wait that
// blocks costs the runtime a handoff of the thread's P and a slow return
// from the syscall, while under load the next events are usually there.
func (l *Loop) Run(interval time.Duration, tick func(now time.Time) bool) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	events := make([]unix.EpollEvent, 256)
	next := time.Now().Add(interval)
	wait := int(interval / time.Millisecond)
	ms := wait
	for {
		n, err := unix.EpollWait(l.epfd, events, ms)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if n <= 0 && ms == 0 {
			runtime.Gosched()
			ms = wait
			continue
		}
		ms = 0
		for i := 0; i < n; i++ {
			if h := l.handlers[int(events[i].Fd)]; h != nil {
				h.Event(events[i].Events)
			}
		}
		if now := time.Now(); !now.Before(next) {
			next = now.Add(interval)
			if !tick(now) {
				return nil
			}
		}
	}
}

// Close releases the epoll descriptor (not the ones registered with it).
func (l *Loop) Close() { unix.Close(l.epfd) }
