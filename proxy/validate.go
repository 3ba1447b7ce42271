package proxy

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/pingora-go/pingora-go/internal/errjoin"
	"github.com/pingora-go/pingora-go/proxy/lb"
	"github.com/pingora-go/pingora-go/proxy/route"
)

// The rules a config document's upstream groups and routes must follow
// live here and in proxy/lb, proxy/route and proxy/health, the packages
// that own the types; Router.Build applies them, and node's config parser
// calls the same functions, so a document that parses also builds
// (issue 13).

// FieldError is one invalid field found by a Validate method of this
// package; Validate joins them (errors.Join).
type FieldError struct {
	// Field is the field's Go name, dotted and indexed below the value
	// validated, such as "Key.Headers[1]" or "HealthCheck.Interval".
	Field string
	// Reason says what is wrong with its value.
	Reason string
}

func (e *FieldError) Error() string { return "proxy: " + e.Field + ": " + e.Reason }

// FieldReason returns the field and the reason, for callers that name
// the field their own way (a config file's key).
func (e *FieldError) FieldReason() (field, reason string) { return e.Field, e.Reason }

// fieldErrs collects FieldErrors.
type fieldErrs []error

func (f *fieldErrs) add(field, format string, args ...any) {
	*f = append(*f, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// nest adds err's field errors (from health, say) under prefix.
func (f *fieldErrs) nest(prefix string, err error) {
	for _, e := range errjoin.Leaves(err) {
		var fr interface{ FieldReason() (string, string) }
		if errors.As(e, &fr) {
			field, reason := fr.FieldReason()
			f.add(prefix+"."+field, "%s", reason)
		} else {
			f.add(prefix, "%v", e)
		}
	}
}

// Limits of UpstreamConfig.
const (
	// MaxRetries bounds UpstreamConfig.Retries (as Config.Retries).
	MaxRetries = 16
	// MaxReplayBufferBytes bounds UpstreamConfig.ReplayBufferBytes.
	MaxReplayBufferBytes = 64 << 20
)

// Validate reports every invalid field of u, joined, each a *FieldError;
// Router.Build refuses a group that does not validate. Peer addresses are
// not looked at (a name is resolved when dialled).
func (u *UpstreamConfig) Validate() error {
	var f fieldErrs
	if err := lb.CheckPolicy(u.policy()); err != nil {
		f.add("Policy", "%q is not one of %s", u.Policy, strings.Join(lb.Policies(), ", "))
	}
	if u.Retries < -1 || u.Retries > MaxRetries {
		f.add("Retries", "%d is not between -1 (never) and %d", u.Retries, MaxRetries)
	}
	if u.RetryTimeout < 0 {
		f.add("RetryTimeout", "cannot be negative")
	}
	for i, c := range u.RetryOnStatus {
		if c < 500 || c > 599 {
			f.add(fmt.Sprintf("RetryOnStatus[%d]", i), "%d is not a 5xx status", c)
		}
	}
	if u.ReplayBufferBytes < 0 || u.ReplayBufferBytes > MaxReplayBufferBytes {
		f.add("ReplayBufferBytes", "%d is not between 0 and 64 MiB", u.ReplayBufferBytes)
	}
	if u.HealthCheck != nil {
		f.nest("HealthCheck", u.HealthCheck.Validate())
	}
	f.nest("Passive", u.Passive.Validate())
	for i, p := range u.Peers {
		if err := lb.CheckWeight(p.Weight); err != nil {
			f.add(fmt.Sprintf("Peers[%d].Weight", i), "%d is not between 1 and %d", p.Weight, lb.MaxWeight)
		}
		f.nest(fmt.Sprintf("Peers[%d].Timeouts", i), p.Timeouts.Validate())
		f.nest(fmt.Sprintf("Peers[%d].Conns", i), p.Conns.Validate())
	}
	return errors.Join(f...)
}

func (u *UpstreamConfig) policy() string {
	if u.Policy == "" {
		return lb.DefaultPolicy
	}
	return u.Policy
}

// Validate reports every invalid field of rc, joined, each a *FieldError;
// Router.Build refuses a route that does not validate. Which upstream it
// names, and whether another route has the same host and prefix, are
// Build's to check: they need the other routes and groups.
func (rc *RouteConfig) Validate() error {
	var f fieldErrs
	if err := route.CheckHostPattern(rc.Host); err != nil {
		f.add("Host", "%q is not a host name, *.name or *", rc.Host)
	}
	if err := route.CheckPathPrefix(rc.PathPrefix); err != nil {
		f.add("PathPrefix", "%q must start with /", rc.PathPrefix)
	}
	if rc.MaxBodyBytes < 0 {
		f.add("MaxBodyBytes", "cannot be negative")
	}
	for i, name := range rc.Upgrades {
		if err := CheckUpgrade(name); err != nil {
			f.add(fmt.Sprintf("Upgrades[%d]", i), "%v", err)
		}
	}
	if rc.Cache != nil {
		f.nest("Cache", rc.Cache.Validate())
	}
	return errors.Join(f...)
}

// CheckUpgrade returns nil when a route may list name in
// RouteConfig.Upgrades: a protocol name (an RFC 9110 token, no version)
// that is not HTTP itself (h2c, h2, http), which is never tunnelled.
func CheckUpgrade(name string) error {
	switch {
	case name == "":
		return errors.New("empty protocol name")
	case neverUpgrade(name):
		return fmt.Errorf("%q is never tunnelled: a client upgraded to HTTP would reach the upstream past routing, filters and limits", name)
	case !isToken(name):
		return fmt.Errorf("%q is not a protocol name (a token, without a version, such as websocket)", name)
	}
	return nil
}

// Protocols returns the names ParseProtocol accepts, default first.
func Protocols() []string { return []string{HTTP1.String(), H2.String(), H2C.String()} }

// isToken reports an RFC 9110 token, the grammar of field names.
func isToken(s string) bool { return httpguts.ValidHeaderFieldName(s) }
