package sharedcache

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/pingora-go/pingora-go/tinyufo"
)

// headObject is a stored object of which the index reads only the head.
type headObject struct{ meta *cache.Meta }

func (o headObject) Meta() *cache.Meta { return o.meta }
func (o headObject) Len() int64        { return 0 }
func (o headObject) NewReader(context.Context, int64) (cache.Reader, error) {
	return nil, fmt.Errorf("no body")
}

func taggedObject(n int) headObject {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%x ", i)
	}
	return headObject{&cache.Meta{Header: http.Header{"Surrogate-Key": {b.String()}}}}
}

// TestTagIndexBoundsTags: an origin chooses how many surrogate keys a
// response carries (tens of thousands fit in its head). Each costs the tag
// index about 227 bytes and a step under its lock at every store, so an
// object is weighed with its tags and one with more than maxTags is not
// stored. Before, 40,000 one-byte tags were stored as a 200 KB object
// holding 9 MB of index, after 1.7 s of CPU spent removing duplicates
// under the store's lock (every lookup on the node waited).
func TestTagIndexBoundsTags(t *testing.T) {
	c, err := tinyufo.New[any](tinyufo.Config{Capacity: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	idx := tagIndex{c}
	if idx.Put("many", taggedObject(20000), 100) {
		t.Fatal("an object of 20,000 tags was stored")
	}
	if !idx.Put("most", taggedObject(maxTags), 100) {
		t.Fatalf("an object of %d tags was not stored", maxTags)
	}
	if w := c.Weight(); w < 100+maxTags*200 {
		t.Fatalf("an object of %d tags weighs %d, want its tags' cost in the index counted (>= %d)", maxTags, w, 100+maxTags*200)
	}
	if n := c.RemoveTag(fmt.Sprintf("%x", maxTags-1)); n != 1 {
		t.Fatalf("purge of its last tag dropped %d objects, want 1", n)
	}
}

// TestSurrogateKeysUnique: the tags come unique, in order, from both
// fields, however many there are.
func TestSurrogateKeysUnique(t *testing.T) {
	h := http.Header{"Surrogate-Key": {"a b a c"}, "Cache-Tag": {"c, d,b"}}
	if got := strings.Join(SurrogateKeys(h), " "); got != "a b c d" {
		t.Fatalf("tags %q, want a b c d", got)
	}
	var b strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "t%d t%d ", i%40, i%40)
	}
	tags := SurrogateKeys(http.Header{"Surrogate-Key": {b.String()}})
	if len(tags) != 40 || tags[0] != "t0" || tags[39] != "t39" {
		t.Fatalf("%d tags (%v...), want t0..t39", len(tags), tags[:3])
	}
}
