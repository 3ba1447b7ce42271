package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/pingora-go/pingora-go/clock"
)

// Check is an active health check for the peers of one group.
type Check struct {
	// Type is "tcp" (connect only), "http" or "https" (default "tcp").
	Type string
	// Path is the request path of HTTP checks (default "/").
	Path string
	// Host is the Host header of HTTP checks (default: the peer address).
	Host string
	// StatusMin and StatusMax bound the statuses that count as up
	// (default 200 and 399).
	StatusMin, StatusMax int
	// Interval is the time between checks of a peer (default 5s).
	Interval time.Duration
	// Timeout bounds one check (default 2s).
	Timeout time.Duration
	// Rise is how many successes in a row mark a down peer up (default 2).
	Rise int
	// Fall is how many failures in a row mark an up peer down (default 3).
	Fall int
}

func (c Check) withDefaults() Check {
	if c.Type == "" {
		c.Type = "tcp"
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.StatusMin == 0 && c.StatusMax == 0 {
		c.StatusMin, c.StatusMax = 200, 399
	}
	if c.Interval <= 0 {
		c.Interval = 5 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Rise <= 0 {
		c.Rise = 2
	}
	if c.Fall <= 0 {
		c.Fall = 3
	}
	return c
}

// Validate reports every invalid field, joined (errors.Join), each a
// *FieldError naming it.
func (c Check) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	switch c.Type {
	case "", "tcp", "http", "https":
	default:
		bad("Type", "%q is not one of tcp, http, https", c.Type)
	}
	if c.Path != "" {
		if _, err := url.ParseRequestURI(c.Path); err != nil || c.Path[0] != '/' || strings.Contains(c.Path, "#") {
			bad("Path", "%q must be a request path starting with /", c.Path)
		}
	}
	if c.Host != "" && !httpguts.ValidHostHeader(c.Host) {
		bad("Host", "%q is not a Host header value", c.Host)
	}
	if c.StatusMin != 0 || c.StatusMax != 0 {
		if c.StatusMin < 100 || c.StatusMax > 599 || c.StatusMin > c.StatusMax {
			bad("StatusMin", "%d-%d is not a status range within 100-599", c.StatusMin, c.StatusMax)
		}
	}
	if c.Interval != 0 && c.Interval < MinInterval {
		bad("Interval", "%s is below the %s minimum", c.Interval, MinInterval)
	}
	for _, f := range []struct {
		name string
		neg  bool
	}{{"Timeout", c.Timeout < 0}, {"Rise", c.Rise < 0}, {"Fall", c.Fall < 0}} {
		if f.neg {
			bad(f.name, "cannot be negative")
		}
	}
	return errors.Join(errs...)
}

// MinInterval is the shortest Check.Interval: shorter checks would load
// the peers more than they tell.
const MinInterval = 100 * time.Millisecond

// ParseStatusRange parses a range of statuses that count as up, "200-399"
// or a single "204"; "" is the default, 200-399.
func ParseStatusRange(s string) (lo, hi int, err error) {
	if s == "" {
		return 200, 399, nil
	}
	a, b, found := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := lo, error(nil)
	if found {
		hi, err2 = strconv.Atoi(strings.TrimSpace(b))
	}
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, fmt.Errorf("%q is not a status or a range like 200-399", s)
	}
	return lo, hi, nil
}

// Validate reports every invalid field, joined, each a *FieldError.
func (p Passive) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		neg  bool
	}{{"MaxFails", p.MaxFails < 0}, {"CoolOff", p.CoolOff < 0}, {"MaxCoolOff", p.MaxCoolOff < 0}} {
		if f.neg {
			errs = append(errs, &FieldError{Field: f.name, Reason: "cannot be negative"})
		}
	}
	return errors.Join(errs...)
}

// FieldError is one invalid field found by Validate.
type FieldError struct {
	// Field is the field's Go name, such as "Interval".
	Field string
	// Reason says what is wrong with its value.
	Reason string
}

func (e *FieldError) Error() string { return "health: " + e.Field + ": " + e.Reason }

// FieldReason returns the field and the reason, for callers that name
// the field their own way (a config file's key).
func (e *FieldError) FieldReason() (field, reason string) { return e.Field, e.Reason }

// Target is one peer an active check probes.
type Target struct {
	Record *Record
	// Addr is host:port.
	Addr string
	// TLS configures https checks (server name, roots); nil uses defaults.
	TLS *tls.Config
}

// Checker runs one Check against a group's peers.
type Checker struct {
	check   Check
	targets []Target
	clock   clock.Clock
	clients []*http.Client // per target, for http(s) checks
}

// NewChecker returns a Checker; it starts nothing (see Run and Step).
func NewChecker(c Check, targets []Target, clk clock.Clock) *Checker {
	if clk == nil {
		clk = clock.Real{}
	}
	ch := &Checker{check: c.withDefaults(), targets: targets, clock: clk}
	for _, t := range targets {
		ch.clients = append(ch.clients, ch.newClient(t))
	}
	return ch
}

func (c *Checker) newClient(t Target) *http.Client {
	tr := &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   t.TLS,
		DialContext:       (&net.Dialer{Timeout: c.check.Timeout}).DialContext,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       c.check.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Run checks every peer at once each Interval until ctx ends.
func (c *Checker) Run(ctx context.Context) {
	c.Step(ctx)
	t := c.clock.NewTicker(c.check.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			c.Step(ctx)
		}
	}
}

// Step probes every target once, concurrently, and records the results.
func (c *Checker) Step(ctx context.Context) {
	var wg sync.WaitGroup
	for i, t := range c.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.probe(ctx, i, t)
			if ctx.Err() != nil {
				return // stopping: not the peer's fault
			}
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			t.Record.ObserveActive(err == nil, msg, c.check)
		}()
	}
	wg.Wait()
}

func (c *Checker) probe(ctx context.Context, i int, t Target) error {
	ctx, cancel := context.WithTimeout(ctx, c.check.Timeout)
	defer cancel()
	if c.check.Type == "tcp" {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", t.Addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	scheme := c.check.Type
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+t.Addr+c.check.Path, nil)
	if err != nil {
		return err
	}
	if c.check.Host != "" {
		req.Host = c.check.Host
	}
	req.Header.Set("User-Agent", "pingora-go-health-check")
	resp, err := c.clients[i].Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < c.check.StatusMin || resp.StatusCode > c.check.StatusMax {
		return fmt.Errorf("status %d outside %d-%d", resp.StatusCode, c.check.StatusMin, c.check.StatusMax)
	}
	return nil
}
