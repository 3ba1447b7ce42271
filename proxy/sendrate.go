package proxy

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/h2"
)

// sendMeter holds an HTTP/1.1 client's responses to the minimum send rate
// (DownstreamConfig.MinSendRate), counted where each send(2) reports its
// progress: the client socket's raw writes (sockIO, Linux). A deadline on a
// whole write cannot tell a client trickling a byte at a time through a
// tiny receive window from a slow but real reader inside one 32 KiB flush;
// the socket can, as HTTP/2 counts each stream's waits for window
// (proxy/h2/rate.go), with the same rule: a response may wait MinRateGrace
// plus 1/MinSendRate for every byte sent of it so far, and only time
// waiting on the client counts, that is a write that met a full send buffer
// (EAGAIN) waiting for room. A write that does not wait reads no clock and
// allocates nothing; one that waits reads the clock twice and arms a timer
// on the server's clock that ends the wait when the budget runs out, in
// addition to the write idle deadline.
//
// The bytes and the time waited are the current request's (reset): one
// response each, so that a keep-alive connection's earlier responses buy
// nothing for a later one, and its idle time between requests, when
// nothing is written, never counts.
type sendMeter struct {
	clk   clock.Clock
	grace time.Duration
	rate  int
	conn  net.Conn // the client socket, whose write deadline a cut sets in the past
	rc    syscall.RawConn
	// slow, listener, client: the server's slow-client hook and its
	// arguments (fields rather than a closure: no allocation a connection)
	slow             func(listener, client, proto, dir string)
	listener, client string

	// The writer's (under sockIO.wmu; reset between requests, when
	// nothing writes).
	on     bool
	sent   int64
	waited time.Duration
	start  time.Time
	// spliceWait: a splice to the client (spliceBody) began a wait
	spliceWait bool
	fireF      func()        // fire, bound on first use
	queueF     func(uintptr) // queuedOn, bound on first use

	mu      sync.Mutex
	waiting bool          // a write waits under timer
	fired   bool          // the timer ended the wait: the client is too slow
	timer   clock.Stopper // the wait's
	queued  int64         // queuedOn's answer
}

// errSlowSend fails a response write to a client under the minimum send
// rate: a timeout, as a write idle timeout is.
var errSlowSend = fmt.Errorf("proxy: response taken under the minimum rate (min_send_rate): %w", os.ErrDeadlineExceeded)

// reset starts a request's count; on: its response is held to the rate
// (not a gRPC call, not a tunnel). Nothing writes meanwhile.
func (m *sendMeter) reset(on bool) {
	if m == nil {
		return
	}
	m.on, m.sent, m.waited = on && m.rate > 0, 0, 0
}

// beginWait runs when a write met EAGAIN and is about to wait for room,
// with unsent bytes still in the socket's send queue: it reports true
// when the response has no budget left (the write fails with
// errSlowSend), else arms the timer that ends the wait when it runs out.
//
// Bytes count once the client's kernel acknowledged them (sent less the
// queue), not when the proxy's kernel took them: the send buffer, which
// Linux grows to a megabyte and more on a fast path, would otherwise buy a
// client that takes nothing minutes of credit. A previous response's
// tail still queued makes this one's count smaller, never negative.
func (m *sendMeter) beginWait(unsent int64) (slow bool) {
	budget := h2.RateBudget(m.grace, m.rate, max(m.sent-unsent, 0), m.waited)
	if budget < 0 {
		m.cut()
		return true
	}
	if m.fireF == nil {
		m.fireF, m.queueF = m.fire, m.queuedOn
	}
	m.start = m.clk.Now()
	m.mu.Lock()
	m.waiting, m.fired = true, false
	// The client is cut when it waited more than its budget: the timer
	// fires a nanosecond after it.
	m.timer = m.clk.AfterFunc(budget+time.Nanosecond, m.fireF)
	m.mu.Unlock()
	return false
}

// endWait runs when the wait beginWait began ended (the socket took more,
// or the poller failed the wait): it reports true when the timer ended it.
func (m *sendMeter) endWait() (slow bool) {
	m.mu.Lock()
	m.waiting = false
	fired, t := m.fired, m.timer
	m.timer = nil
	m.mu.Unlock()
	if t != nil {
		t.Stop()
	}
	m.waited += m.clk.Now().Sub(m.start)
	if fired {
		m.cut()
	}
	return fired
}

// fire is the timer's: the budget beginWait saw ran out while the write
// waits. The client may have taken bytes meanwhile without the socket
// waking the write (the kernel wakes a writer only once a good part of
// its send buffer is free): the budget is counted again with the bytes
// acknowledged now, and the timer armed for what is left. When nothing
// is left, a write deadline in the past ends the wait (the connection
// closes after the cut, so it stays), and the close will be a reset.
func (m *sendMeter) fire() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.waiting {
		return
	}
	// The writer waits and wrote sent before it locked mu in beginWait.
	m.queued = m.sent
	m.rc.Control(m.queueF)
	waited := m.waited + m.clk.Now().Sub(m.start)
	if budget := h2.RateBudget(m.grace, m.rate, max(m.sent-m.queued, 0), waited); budget >= 0 {
		m.timer = m.clk.AfterFunc(budget+time.Nanosecond, m.fireF)
		return
	}
	m.fired = true
	m.rc.Control(resetOnClose) // the close drops what the queue holds
	m.conn.SetWriteDeadline(time.Unix(1, 0))
}

// queuedOn is fire's look at the socket's send queue (Control); m.mu is
// held.
func (m *sendMeter) queuedOn(fd uintptr) { m.queued = sendQueued(fd) }

// cut counts and logs the slow client, once.
func (m *sendMeter) cut() {
	m.on = false
	m.slow(m.listener, m.client, "HTTP/1.1", h2.SlowSend)
}
