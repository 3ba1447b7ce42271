package config

import "time"

// RouteCache turns the HTTP cache on for a route (RFC 9111 semantics; see
// the README's "HTTP cache").
type RouteCache struct {
	// Enabled turns caching on for the route (default false). Turning it
	// on or off is a live config change.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Shared puts the route's objects in the cluster tier, where each
	// key's ring owner fills it once for every node. It takes effect with
	// the cluster tier; until then objects stay on the node that fetched
	// them (default false).
	Shared bool `yaml:"shared" json:"shared,omitempty"`
	// MaxObjectBytes caps a stored body; larger responses stream through
	// uncached (default 16 MiB, at most 1 GiB).
	MaxObjectBytes int64 `yaml:"max_object_bytes" json:"max_object_bytes,omitempty"`
	// Key adds request parts to the cache key (default: method, scheme,
	// host, path and the whole query).
	Key CacheKey `yaml:"key" json:"key,omitzero"`
	// StatusHeader names the cache in the Cache-Status response field;
	// "off" sends none (default pingora-go).
	StatusHeader string `yaml:"status_header" json:"status_header,omitempty"`
	// LockTimeout bounds a wait for another request's fill of the same key
	// before going to the origin uncached (default 5s, at most 5m).
	LockTimeout time.Duration `yaml:"lock_timeout" json:"lock_timeout,omitempty"`
	// DefaultStaleIfError serves a stale response this long past its
	// freshness when the origin fails, for responses that state no
	// stale-if-error (default 0: none).
	DefaultStaleIfError time.Duration `yaml:"default_stale_if_error" json:"default_stale_if_error,omitempty"`
}

// CacheKey lists the request parts added to a route's cache key.
type CacheKey struct {
	// Headers are request fields whose values join the key (default none).
	Headers []string `yaml:"headers" json:"headers,omitempty"`
	// Cookies are cookies whose values join the key (default none).
	Cookies []string `yaml:"cookies" json:"cookies,omitempty"`
	// Query, when set, keeps only these query parameters (sorted by name;
	// a repeated name's values in the order sent) in the key instead of
	// the whole query; [] drops the query (default: unset, the whole
	// query).
	Query []string `yaml:"query" json:"query,omitzero"`
}
