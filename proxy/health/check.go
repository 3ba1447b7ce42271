package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

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

// Validate names the first invalid field.
func (c Check) Validate() error {
	switch c.Type {
	case "", "tcp", "http", "https":
	default:
		return fmt.Errorf("health: type %q is not one of tcp, http, https", c.Type)
	}
	switch {
	case c.Interval < 0 || c.Timeout < 0:
		return errors.New("health: interval and timeout cannot be negative")
	case c.Interval > 0 && c.Interval < 100*time.Millisecond:
		return fmt.Errorf("health: interval (%s) must be at least 100ms", c.Interval)
	case c.Rise < 0 || c.Fall < 0:
		return errors.New("health: rise and fall cannot be negative")
	case c.StatusMin > c.StatusMax || c.StatusMin < 0 || c.StatusMax > 599:
		return fmt.Errorf("health: status range %d-%d is invalid", c.StatusMin, c.StatusMax)
	case c.Path != "" && c.Path[0] != '/':
		return fmt.Errorf("health: path %q must start with /", c.Path)
	}
	return nil
}

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
