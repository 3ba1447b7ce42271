package health

import (
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/lb"
)

// Passive sets how proxy failures eject a peer. A zero MaxFails turns
// passive health off.
type Passive struct {
	// MaxFails is how many proxy failures in a row eject the peer
	// (default 0: never eject).
	MaxFails int
	// CoolOff is how long the first ejection lasts; each further ejection in
	// a row doubles it (default 10s).
	CoolOff time.Duration
	// MaxCoolOff caps the doubled cool-off (default 5m).
	MaxCoolOff time.Duration
}

func (p Passive) withDefaults() Passive {
	if p.CoolOff <= 0 {
		p.CoolOff = 10 * time.Second
	}
	if p.MaxCoolOff <= 0 {
		p.MaxCoolOff = 5 * time.Minute
	}
	if p.MaxCoolOff < p.CoolOff {
		p.MaxCoolOff = p.CoolOff
	}
	return p
}

// Change is a flip of a peer's verdict, for logs and metrics.
type Change struct {
	Key     string
	Addr    string
	Healthy bool
	// Reason says why: "active check failed", "ejected after 3 failures", ...
	Reason string
	At     time.Time
}

// Record is the health of one peer.
type Record struct {
	key, addr string
	state     *lb.State
	reg       *Registry

	mu           sync.Mutex
	activeOn     bool // an active check covers the peer
	activeUp     bool // the active check's verdict
	succ, fail   int  // consecutive active results
	passiveFails int
	ejectedUntil time.Time
	ejections    int
	disabled     bool
	healthy      bool
	lastChange   time.Time
	lastError    string
	timer        clock.Stopper // ends the current ejection
	retired      bool          // no live table uses the record (Registry.Retain)
}

// State returns the lb.State the verdict is written to.
func (r *Record) State() *lb.State { return r.state }

// Key returns the peer key the record was made for.
func (r *Record) Key() string { return r.key }

// ObserveActive records one active check result under check c.
func (r *Record) ObserveActive(ok bool, errText string, c Check) {
	c = c.withDefaults()
	r.mu.Lock()
	r.activeOn = true
	if ok {
		r.succ, r.fail = r.succ+1, 0
		if !r.activeUp && r.succ >= c.Rise {
			r.activeUp = true
		}
	} else {
		r.succ, r.fail = 0, r.fail+1
		r.lastError = errText
		if r.activeUp && r.fail >= c.Fall {
			r.activeUp = false
		}
	}
	ch := r.publishLocked("active check")
	r.mu.Unlock()
	r.reg.notify(ch)
}

// StopActive forgets active results when no check covers the peer any more,
// so a removed check cannot leave a peer down forever.
func (r *Record) StopActive() {
	r.mu.Lock()
	r.activeOn, r.activeUp, r.succ, r.fail = false, true, 0, 0
	ch := r.publishLocked("active check removed")
	r.mu.Unlock()
	r.reg.notify(ch)
}

// ObserveProxy records the outcome of one proxied attempt under policy p.
func (r *Record) ObserveProxy(ok bool, errText string, p Passive) {
	if p.MaxFails <= 0 {
		return
	}
	p = p.withDefaults()
	r.mu.Lock()
	if ok {
		r.passiveFails = 0
		if r.ejectedUntil.IsZero() {
			r.ejections = 0 // a success outside an ejection ends the streak
		}
		r.mu.Unlock()
		return
	}
	r.passiveFails++
	r.lastError = errText
	var ch *Change
	if r.passiveFails >= p.MaxFails && r.ejectedUntil.IsZero() && !r.retired {
		ch = r.ejectLocked(p)
	}
	r.mu.Unlock()
	r.reg.notify(ch)
}

// ejectLocked takes the peer out for the cool-off, doubled per ejection in
// a row, and arms the timer that lets it back in.
func (r *Record) ejectLocked(p Passive) *Change {
	d := p.CoolOff
	for i := 0; i < r.ejections && d < p.MaxCoolOff; i++ {
		d *= 2
	}
	d = min(d, p.MaxCoolOff)
	r.ejections++
	r.passiveFails = 0
	now := r.reg.clock.Now()
	r.ejectedUntil = now.Add(d)
	r.timer = r.reg.clock.AfterFunc(d, r.endEjection)
	return r.publishLocked("ejected after proxy failures for " + d.String())
}

func (r *Record) endEjection() {
	r.mu.Lock()
	r.ejectedUntil, r.timer = time.Time{}, nil
	ch := r.publishLocked("cool-off over")
	r.mu.Unlock()
	r.reg.notify(ch)
}

// SetDisabled takes the peer out (true) or lets it back (false) by hand.
func (r *Record) SetDisabled(disabled bool) {
	r.mu.Lock()
	r.disabled = disabled
	ch := r.publishLocked("operator")
	r.mu.Unlock()
	r.reg.notify(ch)
}

// retire ends the record's ejection and silences it (Registry.Retain).
func (r *Record) retire() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retired = true
	if r.timer != nil {
		r.timer.Stop()
	}
	r.timer, r.ejectedUntil = nil, time.Time{}
}

// revive takes back a record that a swap retired before the table that
// holds it was installed.
func (r *Record) revive() {
	r.mu.Lock()
	if !r.retired {
		r.mu.Unlock()
		return
	}
	r.retired = false
	ch := r.publishLocked("peer back in the config")
	r.mu.Unlock()
	r.reg.notify(ch)
}

// publishLocked writes the combined verdict to the lb.State and returns a
// Change when it flipped; a retired record reports none.
func (r *Record) publishLocked(reason string) *Change {
	up := !r.disabled && (!r.activeOn || r.activeUp) && r.ejectedUntil.IsZero()
	if up == r.healthy || r.retired {
		return nil
	}
	r.healthy = up
	r.state.SetHealthy(up)
	r.lastChange = r.reg.clock.Now()
	if !up && r.lastError != "" && reason != "operator" {
		reason += ": " + r.lastError
	}
	return &Change{Key: r.key, Addr: r.addr, Healthy: up, Reason: reason, At: r.lastChange}
}

// Snapshot is a record's state for status pages.
type Snapshot struct {
	Healthy      bool      `json:"healthy"`
	Disabled     bool      `json:"disabled,omitempty"`
	ActiveCheck  string    `json:"active_check,omitempty"` // "up", "down" or "" when no check covers the peer
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	Ejections    int       `json:"ejections,omitempty"`
	LastChange   time.Time `json:"last_change,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
}

// Snapshot returns the record's current state.
func (r *Record) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Snapshot{Healthy: r.healthy, Disabled: r.disabled, EjectedUntil: r.ejectedUntil, Ejections: r.ejections,
		LastChange: r.lastChange, LastError: r.lastError}
	if r.activeOn {
		s.ActiveCheck = "down"
		if r.activeUp {
			s.ActiveCheck = "up"
		}
	}
	return s
}
