package sharedcache

import (
	"net/http"
	"slices"
	"strings"

	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/tinyufo"
)

// tagIndex is a TinyUFO cache as a memory store's Index: an object is
// stored with its surrogate keys as tags, so a purge by surrogate key
// costs the tagged objects, not a scan.
type tagIndex struct{ *tinyufo.Cache[any] }

var _ cache.Index = tagIndex{}

// Put stores v, tagged with the surrogate keys of its head.
func (t tagIndex) Put(key string, v any, weight int64) bool {
	var tags []string
	if o, ok := v.(cache.Object); ok {
		tags = SurrogateKeys(o.Meta().Header)
	}
	return t.PutWith(key, v, weight, tinyufo.PutOptions{Tags: tags})
}

// Evictions returns how many objects TinyUFO dropped to make room.
func (t tagIndex) Evictions() uint64 { return t.Stats().Evictions }

// SurrogateKeys returns the purge tags a response carries: the
// space-separated Surrogate-Key values (Fastly's) and the comma-separated
// Cache-Tag values (Cloudflare's), unique, in order.
func SurrogateKeys(h http.Header) []string {
	var tags []string
	for _, line := range h["Surrogate-Key"] {
		tags = append(tags, strings.Fields(line)...)
	}
	for _, line := range h["Cache-Tag"] {
		for _, t := range strings.Split(line, ",") {
			if t = strings.TrimSpace(t); t != "" {
				tags = append(tags, t)
			}
		}
	}
	if len(tags) < 2 {
		return tags
	}
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
