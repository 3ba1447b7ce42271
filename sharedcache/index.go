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

// maxTags bounds the surrogate keys of a stored object: one with more is
// not stored (as an object the cache does not admit), since it costs its
// tag count in work under the index's lock at every store, eviction and
// replay of a purge. Fastly allows 16 KiB of keys, about a thousand.
const maxTags = 4096

// tagCost is what the tag index spends on an object's tag beyond the tag's
// bytes (which its head holds): a map entry and a set of one object,
// about 227 bytes measured. An object is weighed with it, so the memory cap
// bounds the index too: before, an origin's 40,000 one-byte tags cost the
// index about 9 MB for an object weighed at 200 KB.
const tagCost = 224

// Put stores v, tagged with the surrogate keys of its head.
func (t tagIndex) Put(key string, v any, weight int64) bool {
	var tags []string
	if o, ok := v.(cache.Object); ok {
		tags = SurrogateKeys(o.Meta().Header)
	}
	if len(tags) > maxTags {
		return false
	}
	weight += int64(len(tags)) * tagCost
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
	// In place, with a set past a few tags: the origin chooses how many
	// (up to its head limit, tens of thousands), and a scan of the tags
	// kept for each one made an object of 40,000 tags cost 1.7 s of CPU,
	// under the store's lock.
	out := tags[:0]
	if len(tags) <= 16 {
		for _, t := range tags {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
		return out
	}
	seen := make(map[string]struct{}, len(tags))
	for _, t := range tags {
		if _, ok := seen[t]; !ok {
			seen[t] = struct{}{}
			out = append(out, t)
		}
	}
	return out
}
