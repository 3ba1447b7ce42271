package h2

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/net/http2"
)

// The flood guard: a client that sends frames which ask for nothing (PING,
// SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM, empty DATA without
// END_STREAM, unknown types, frames answered with a stream error) costs
// the reader CPU for each, and a PING or SETTINGS costs a reply too
// (CVE-2019-9512, -9515, -9518). Each such frame spends one unit of a
// budget; useful work refills it: a request a handler runs, a DATA frame
// of request body, a DATA frame the server sent (the client answers those
// with WINDOW_UPDATE and, for gRPC, BDP PINGs), and time, for keepalive
// PINGs on a connection that is otherwise quiet. The budget never holds
// more than floodBurst, so credit is not banked: a connection that has
// been useful for an hour may still send only floodBurst overhead frames
// in a row. Only the credit of DATA sent is kept until used: the client
// answers that data as its application reads it, long after a burst
// filled its windows. When the budget runs out the connection ends with
// GOAWAY ENHANCE_YOUR_CALM and Config.OnFlood hears of it.
//
// A budget of frames, not nginx's byte ratio (overhead bytes / 8 over
// payload bytes + 1 MiB), because the cost is per frame: the ratio lets a
// client send 8 MiB of overhead before it counts, half a million PINGs,
// and seven overhead bytes for each payload byte after that, for ever.
// The budget admits floodBurst frames, then only as many as work done.
//
// Replies to a client that does not read do not queue: the reader writes
// them itself into the connection's fixed buffer and, when the client
// does not read, blocks in the write (bounded by WriteTimeout) and reads
// no further frames (TestUnreadRepliesBlockReader).

const (
	// floodBurst is the most overhead frames a client may send in a row
	// without doing work: about 3 ms of the reader's CPU. Browsers send a
	// few at the start of a connection (SETTINGS, WINDOW_UPDATE, a
	// handful of PRIORITY frames for their dependency tree).
	floodBurst = 1000
	// floodPerRequest is the credit of a request a handler runs: room for
	// its PRIORITY or PRIORITY_UPDATE frames, its RST_STREAM and the
	// WINDOW_UPDATEs of a small response (Envoy allows 100 PRIORITY
	// frames per stream: a client that needs more sends them in bursts,
	// which floodBurst covers).
	floodPerRequest = 16
	// floodPerDataIn is the credit of a DATA frame of request body.
	floodPerDataIn = 1
	// floodPerDataOut and floodPerKiBOut are the credit of a DATA frame
	// sent: clients return window in pieces as their application reads
	// (Go's transport, near the end of its window, at each read: two
	// WINDOW_UPDATEs per 1 KiB read), and may answer a frame with a BDP
	// PING; a 16 KiB frame earns 132 (Envoy allows 10 WINDOW_UPDATEs per
	// DATA frame sent, but it sends a frame per WINDOW_UPDATE: here the
	// writer may take several at once).
	floodPerDataOut = 4
	floodPerKiBOut  = 8
	// floodRefillEvery is the time for one unit of credit: keepalive
	// PINGs every 100 ms on an idle stream never run out (gRPC clients
	// send one every 10 s at the most).
	floodRefillEvery = 100 * time.Millisecond
)

// Flood reasons, as Config.OnFlood is told them.
const (
	// FloodFrames is a connection whose frames were mostly overhead.
	FloodFrames = "overhead_frames"
	// FloodHeaderBlock is a header block that never ended: CONTINUATION
	// frames past twice MaxHeaderListSize (CVE-2024-27316 in others).
	FloodHeaderBlock = "header_block"
	// FloodRapidReset is a client that opened streams only to reset them
	// (CVE-2023-44487).
	FloodRapidReset = "rapid_reset"
)

// The rapid-reset guard. A request whose stream the client resets at once
// earns the flood budget its credit like any other (its handler ran), yet
// each such pair of frames starts a request, and maybe an upstream
// exchange, for nothing: 200,000 HEADERS+RST_STREAM pairs on one
// connection ran 142,000 cancelled requests. The running-handler cap
// bounds how many run at once, not how many run. As Envoy does (it closes
// a connection once half of at least 500 streams were reset early), a
// connection ends with ENHANCE_YOUR_CALM when, within one second, the
// client reset rapidResetLimit streams the server had not finished and
// those were more than half the streams it opened in that second. One
// cancel of everything in flight (a browser leaving a page) resets at most
// MaxConcurrentStreams streams, and the limit is at least twice that; a
// proxy in front that multiplexes many users' cancels onto one connection
// stays under half.
const (
	rapidResetLimit  = 1000
	rapidResetWindow = time.Second
)

// rapidResets counts, on the reader goroutine, the client's resets of
// unfinished streams in the current window.
type rapidResets struct {
	since   time.Time // the window's start
	opened0 uint64    // Conn.opened at the window's start
	resets  uint32
}

// clientReset counts a client's reset of a stream the server had not
// finished, and reports a flood when resets dominate the window.
func (c *Conn) clientReset() error {
	r := &c.rapid
	now := c.flood.now()
	if now.Sub(r.since) >= rapidResetWindow {
		r.since, r.opened0, r.resets = now, c.opened, 0
	}
	r.resets++
	opened := c.opened - r.opened0
	limit := max(rapidResetLimit, 2*c.cfg.MaxConcurrentStreams)
	if r.resets < limit || uint64(r.resets)*2 <= opened {
		return nil
	}
	return &floodError{reason: FloodRapidReset, detail: fmt.Sprintf("%d streams reset by the client within %v, of %d it opened", r.resets, rapidResetWindow, opened)}
}

// floodGuard is the budget. outCredit is counted under wmu by the
// writers; the rest is the reader goroutine's.
type floodGuard struct {
	left      int32
	outCredit uint64    // the credit of the DATA frames written
	outSeen   uint64    // outCredit at the last refill
	outBank   uint64    // the credit of DATA sent, not yet used
	refilled  time.Time // the time credited up to
	now       func() time.Time
}

// floodError ends a flooding connection with ENHANCE_YOUR_CALM.
type floodError struct {
	reason, detail string
}

func (e *floodError) Error() string { return "h2: flood: " + e.detail }

// overhead spends one unit for frame f, which did no work.
func (c *Conn) overhead(f any) error {
	if c.flood.left--; c.flood.left >= 0 {
		return nil
	}
	return c.refillFlood(f)
}

// useful credits n units for work done; the reader's only.
func (c *Conn) useful(n int32) {
	c.flood.left = min(c.flood.left+n, floodBurst)
}

// refillFlood credits the DATA frames sent and the time passed since the
// last refill, when the budget ran out; the connection floods if that is
// not enough for frame f.
func (c *Conn) refillFlood(f any) error {
	g := &c.flood
	c.lockWrite()
	out := g.outCredit
	c.unlockWrite()
	now := g.now()
	ticks := now.Sub(g.refilled) / floodRefillEvery
	g.refilled = g.refilled.Add(ticks * floodRefillEvery)
	left := int64(g.left) + int64(ticks)
	if left >= floodBurst {
		left, g.refilled = floodBurst, now // no credit is banked
	}
	// The credit of DATA sent is banked: the client answers it when its
	// application reads, long after a burst filled its windows.
	g.outBank += out - g.outSeen
	g.outSeen = out
	take := min(uint64(floodBurst-left), g.outBank)
	g.outBank -= take
	left += int64(take)
	g.left = int32(left)
	if left >= 0 {
		return nil
	}
	return &floodError{reason: FloodFrames, detail: "too many frames without a request or body, the last " + frameName(f)}
}

// frameName names a frame for the log.
func frameName(f any) string {
	switch f := f.(type) {
	case http2.Frame:
		return f.Header().Type.String()
	case *fieldBlock:
		return "HEADERS"
	case http2.StreamError:
		return "frame answered with RST_STREAM " + f.Code.String()
	}
	return "frame"
}

// flooded ends the connection and reports it when err is a flood.
func (c *Conn) flooded(err error) bool {
	var fe *floodError
	if !errors.As(err, &fe) {
		return false
	}
	if c.cfg.OnFlood != nil {
		c.cfg.OnFlood(fe.reason, err)
	}
	c.goAway(http2.ErrCodeEnhanceYourCalm, fe.detail)
	return true
}
