package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Absent is the value of a Directives duration whose directive is not
// present.
const Absent time.Duration = -1

// maxDelta is the largest delta-seconds a cache must represent; larger
// values are taken as this (RFC 9111 §1.2.2).
const maxDelta = 2147483648 * time.Second

// Directives are the Cache-Control directives of one message (RFC 9111
// §5.2), request or response. When a directive repeats, the first
// occurrence counts (§4.2.1). A duration is Absent when its directive is
// not there; an invalid value counts as 0, which errs toward revalidation.
type Directives struct {
	NoStore, NoCache, Private, Public       bool
	MustRevalidate, ProxyRevalidate         bool
	MustUnderstand, Immutable, OnlyIfCached bool
	// MaxStaleAny is max-stale without a value: any staleness (§5.2.1.2).
	MaxStaleAny bool

	MaxAge, SMaxAge, MaxStale, MinFresh time.Duration
	StaleWhileRevalidate, StaleIfError  time.Duration
}

// ParseDirectives parses every Cache-Control field line of h.
func ParseDirectives(h http.Header) Directives {
	d := Directives{MaxAge: Absent, SMaxAge: Absent, MaxStale: Absent, MinFresh: Absent,
		StaleWhileRevalidate: Absent, StaleIfError: Absent}
	for _, line := range h["Cache-Control"] {
		for line != "" {
			var item string
			item, line = nextItem(line)
			name, val, hasVal := strings.Cut(item, "=")
			d.set(strings.ToLower(strings.TrimSpace(name)), unquote(strings.TrimSpace(val)), hasVal)
		}
	}
	return d
}

// ParseRequest parses a request's directives: Cache-Control, and Pragma
// no-cache when the request has no Cache-Control (RFC 9111 §5.4).
func ParseRequest(h http.Header) Directives {
	d := ParseDirectives(h)
	if len(h["Cache-Control"]) == 0 && hasToken(h["Pragma"], "no-cache") {
		d.NoCache = true
	}
	return d
}

func (d *Directives) set(name, val string, hasVal bool) {
	switch name {
	case "no-store":
		d.NoStore = true
	case "no-cache":
		d.NoCache = true // a qualified no-cache is taken as unqualified: safe
	case "private":
		d.Private = true // likewise qualified private
	case "public":
		d.Public = true
	case "must-revalidate":
		d.MustRevalidate = true
	case "proxy-revalidate":
		d.ProxyRevalidate = true
	case "must-understand":
		d.MustUnderstand = true
	case "immutable":
		d.Immutable = true
	case "only-if-cached":
		d.OnlyIfCached = true
	case "max-age":
		setDelta(&d.MaxAge, val)
	case "s-maxage":
		setDelta(&d.SMaxAge, val)
	case "min-fresh":
		setDelta(&d.MinFresh, val)
	case "stale-while-revalidate":
		setDelta(&d.StaleWhileRevalidate, val)
	case "stale-if-error":
		setDelta(&d.StaleIfError, val)
	case "max-stale":
		if !hasVal {
			d.MaxStaleAny = true
			return
		}
		setDelta(&d.MaxStale, val)
	}
}

// setDelta sets *p from delta-seconds v unless it was set before.
func setDelta(p *time.Duration, v string) {
	if *p != Absent {
		return
	}
	*p = parseDelta(v)
}

// parseDelta reads delta-seconds (§1.2.2): digits only; an invalid value
// is 0 and an overflowing one maxDelta.
func parseDelta(v string) time.Duration {
	if v == "" {
		return 0
	}
	n := int64(0)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
		if n > int64(maxDelta/time.Second) {
			return maxDelta
		}
	}
	return time.Duration(n) * time.Second
}

// nextItem splits s at the first comma outside a quoted string.
func nextItem(s string) (item, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case '\\':
			if quoted {
				i++
			}
		case ',':
			if !quoted {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		if u, err := strconv.Unquote(v); err == nil {
			return u
		}
		return v[1 : len(v)-1]
	}
	return v
}

// hasToken reports whether the comma-separated values hold tok (no case).
func hasToken(values []string, tok string) bool {
	for _, line := range values {
		for line != "" {
			var item string
			item, line = nextItem(line)
			if strings.EqualFold(strings.TrimSpace(item), tok) {
				return true
			}
		}
	}
	return false
}
