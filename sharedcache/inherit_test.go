package sharedcache

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
)

// newInheritCache is a cache with no ring or peers: every key is its own.
func newInheritCache(t *testing.T, name string) *Cache {
	t.Helper()
	c, err := New(Config{Name: name, MaxBytes: 64 << 20, MaxObjectBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// store fills key in c's local tier with meta and body, as the engine does.
func storeObject(t *testing.T, c *Cache, key string, meta *cache.Meta, body []byte) {
	t.Helper()
	f, _, err := c.local.Lock(context.Background(), key, 0)
	if err != nil || f == nil {
		t.Fatalf("lock %q: %v", key, err)
	}
	if err := f.Start(meta, 0); err != nil {
		t.Fatal(err)
	}
	for len(body) > 0 { // in pieces, so the object has several blocks
		n := min(len(body), 5000)
		f.Write(body[:n])
		body = body[n:]
	}
	if err := f.Commit(); err != nil {
		t.Fatalf("commit %q: %v", key, err)
	}
}

func testMeta(reqAt time.Time, extra http.Header) *cache.Meta {
	h := http.Header{"Cache-Control": {"max-age=60"}, "Etag": {`"v1"`}, "Date": {reqAt.UTC().Format(http.TimeFormat)}}
	for k, v := range extra {
		h[k] = v
	}
	return &cache.Meta{Status: 200, Header: h, RequestTime: reqAt, ResponseTime: reqAt.Add(time.Millisecond), Fresh: time.Minute,
		StaleWhileRevalidate: 5 * time.Second, StaleIfError: time.Hour, MustRevalidate: true}
}

func lookupBody(t *testing.T, c *Cache, key string) (*cache.Meta, []byte) {
	t.Helper()
	o, _ := c.local.Lookup(context.Background(), key)
	if o == nil {
		return nil, nil
	}
	b, err := readObject(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return o.Meta(), b
}

func waitInherited(t *testing.T, c *Cache, state string) InheritStats {
	t.Helper()
	waitFor(t, "inherit "+state, func() bool { return c.Inherited().State == state })
	return c.Inherited()
}

// TestInheritCarriesObjects: every complete object of the old cache's
// local tier arrives whole with its head (freshness, validators, stale
// windows, Vary index and variants), a key the new cache filled itself
// meanwhile keeps its own object, and the figures say what came.
func TestInheritCarriesObjects(t *testing.T) {
	t.Parallel()
	old, heir := newInheritCache(t, "n1"), newInheritCache(t, "n1")
	now := time.Now()
	bodies := map[string][]byte{}
	for i := range 50 {
		key := "GET http://origin.test/k" + strconv.Itoa(i)
		b := bytes.Repeat([]byte(key+";"), 1+i*300) // up to about 400 KB: several blocks and frames
		storeObject(t, old, key, testMeta(now, http.Header{"Surrogate-Key": {"t" + strconv.Itoa(i%3)}}), b)
		bodies[key] = b
	}
	idx := &cache.Meta{Variants: &cache.Variants{ID: "abc.1", Fields: []string{"Accept-Encoding"}}, RequestTime: now, ResponseTime: now}
	storeObject(t, old, "GET http://origin.test/v", idx, nil)
	vk := "GET http://origin.test/v\x00abc.1\x00gzip"
	storeObject(t, old, vk, testMeta(now, http.Header{"Vary": {"Accept-Encoding"}}), []byte("zipped"))
	bodies[vk] = []byte("zipped")
	// The heir filled this one itself before the stream came: it stays.
	storeObject(t, heir, "GET http://origin.test/k7", testMeta(now.Add(time.Second), nil), []byte("newer"))

	a, b := net.Pipe()
	if !old.Bequeath(a, time.Minute) || !heir.Inherit(b, time.Minute) {
		t.Fatal("closed")
	}
	st := waitInherited(t, heir, "done")
	if st.Objects != 51 || st.Skipped != 1 || st.Offered != 52 || st.Bytes == 0 {
		t.Fatalf("inherited %+v, want 51 objects and 1 skipped of 52", st)
	}
	for key, want := range bodies {
		m, got := lookupBody(t, heir, key)
		if key == "GET http://origin.test/k7" {
			want = []byte("newer")
		}
		if m == nil || !bytes.Equal(got, want) {
			t.Fatalf("%q: %d bytes, want %d", key, len(got), len(want))
		}
		om, _ := lookupBody(t, old, key)
		if key != "GET http://origin.test/k7" && !sameMeta(m, om) {
			t.Fatalf("%q: head %+v, want %+v", key, m, om)
		}
	}
	m, _ := lookupBody(t, heir, "GET http://origin.test/v")
	if m == nil || m.Variants == nil || m.Variants.ID != "abc.1" || !reflect.DeepEqual(m.Variants.Fields, []string{"Accept-Encoding"}) {
		t.Fatalf("vary index %+v", m)
	}
	// Tags came along: a purge by surrogate key finds the objects.
	if n, _ := heir.PurgeLocal(Purge{Tags: []string{"t1"}}); n != 16 { // k1, k4, ... k49; k7 is the heir's own, untagged
		t.Fatalf("tag purge dropped %d, want 16", n)
	}
}

func sameMeta(a, b *cache.Meta) bool {
	return a.Status == b.Status && reflect.DeepEqual(a.Header, b.Header) && a.RequestTime.Equal(b.RequestTime) &&
		a.ResponseTime.Equal(b.ResponseTime) && a.Fresh == b.Fresh && a.StaleWhileRevalidate == b.StaleWhileRevalidate &&
		a.StaleIfError == b.StaleIfError && a.MustRevalidate == b.MustRevalidate && a.NoCache == b.NoCache &&
		reflect.DeepEqual(a.Variants, b.Variants)
}

// TestInheritHonoursPurges: an object a purge selects is not inherited
// when the purge ran on the new cache before it arrived, and is dropped
// when the old cache applies a purge after the stream (it still serves
// its peers while it drains); the old log comes along.
func TestInheritHonoursPurges(t *testing.T) {
	t.Parallel()
	old, heir := newInheritCache(t, "n1"), newInheritCache(t, "n1")
	at := time.Now().Add(-10 * time.Second)
	for i := range 5 {
		storeObject(t, old, "GET http://origin.test/p"+strconv.Itoa(i), testMeta(at, nil), []byte("body"+strconv.Itoa(i)))
	}
	if _, err := old.PurgeLocal(Purge{URLs: []string{"http://origin.test/gone"}}); err != nil {
		t.Fatal(err)
	}
	// Purged on the new process (it took the cluster port) before the
	// stream came.
	if _, err := heir.PurgeLocal(Purge{URLs: []string{"http://origin.test/p0"}}); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	old.Bequeath(a, time.Minute)
	heir.Inherit(b, time.Minute)
	st := waitInherited(t, heir, "done")
	if st.Objects != 4 || st.Skipped != 1 || st.Purges != 1 {
		t.Fatalf("inherited %+v, want 4 objects, p0 skipped, 1 purge from the old log", st)
	}
	if m, _ := lookupBody(t, heir, "GET http://origin.test/p0"); m != nil {
		t.Fatal("p0 came back after its purge")
	}
	// Purged on the old process while it drains: forwarded.
	if _, err := old.PurgeLocal(Purge{URLs: []string{"http://origin.test/p3"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forwarded purge", func() bool { m, _ := lookupBody(t, heir, "GET http://origin.test/p3"); return m == nil })
	if m, _ := lookupBody(t, heir, "GET http://origin.test/p2"); m == nil {
		t.Fatal("p2 dropped too")
	}
	if n, _ := heir.plog.size(); n != 3 {
		t.Fatalf("heir's purge log holds %d, want 3", n)
	}
	// The old cache closes: the stream ends, the heir keeps its objects.
	old.Close()
	waitFor(t, "the stream's end", func() bool { return heir.inheritGone() })
	if m, _ := lookupBody(t, heir, "GET http://origin.test/p4"); m == nil {
		t.Fatal("p4 lost")
	}
}

// inheritGone reports whether the inherit goroutine ended (test only).
func (c *Cache) inheritGone() bool {
	c.inherit.mu.Lock()
	defer c.inherit.mu.Unlock()
	return c.inherit.ended
}

// TestInheritCutKeepsWhatArrived: a stream that breaks mid-object keeps
// the whole objects before it and nothing partial; one of another version
// is refused.
func TestInheritCutKeepsWhatArrived(t *testing.T) {
	t.Parallel()
	heir := newInheritCache(t, "n1")
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	writeFrame(bw, frameHello, &streamHello{Version: streamVersion})
	meta := toWireMeta(testMeta(time.Now(), nil))
	writeFrame(bw, frameObject, &streamObject{Key: "GET http://origin.test/a", Meta: meta, Len: 3})
	bw.WriteString("abc")
	writeFrame(bw, frameObject, &streamObject{Key: "GET http://origin.test/b", Meta: meta, Len: 1000})
	bw.WriteString("only part")
	bw.Flush()
	a, b := net.Pipe()
	go func() {
		a.Write(buf.Bytes())
		a.Close()
	}()
	heir.Inherit(b, time.Minute)
	st := waitInherited(t, heir, "cut")
	if st.Objects != 1 || !strings.Contains(st.Error, "unexpected EOF") {
		t.Fatalf("%+v, want 1 object and an unexpected EOF", st)
	}
	if _, body := lookupBody(t, heir, "GET http://origin.test/a"); string(body) != "abc" {
		t.Fatalf("a: %q", body)
	}
	if m, _ := lookupBody(t, heir, "GET http://origin.test/b"); m != nil {
		t.Fatal("a partial object was stored")
	}

	other := newInheritCache(t, "n1")
	a, b = net.Pipe()
	go func() {
		bw := bufio.NewWriter(a)
		writeFrame(bw, frameHello, &streamHello{Version: streamVersion + 1})
		bw.Flush()
		io.Copy(io.Discard, a)
	}()
	other.Inherit(b, time.Minute)
	if st := waitInherited(t, other, "cut"); !strings.Contains(st.Error, "another version") {
		t.Fatalf("%+v", st)
	}
}

// TestInheritDeadline: a sender that stalls does not hold the heir past
// its deadline; it keeps what came.
func TestInheritDeadline(t *testing.T) {
	t.Parallel()
	heir := newInheritCache(t, "n1")
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		bw := bufio.NewWriter(a)
		writeFrame(bw, frameHello, &streamHello{Version: streamVersion})
		bw.Flush() // and then nothing
	}()
	heir.Inherit(b, 50*time.Millisecond)
	if st := waitInherited(t, heir, "cut"); st.Objects != 0 || st.Error == "" {
		t.Fatalf("%+v", st)
	}
}

// TestInheritedSecondsWhileReceiving: while the objects arrive, Seconds
// says for how long they have (pingora-node status prints "receiving for
// N s" from it). Before, it stayed 0 until the stream ended.
func TestInheritedSecondsWhileReceiving(t *testing.T) {
	t.Parallel()
	heir := newInheritCache(t, "n1")
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		bw := bufio.NewWriter(a)
		writeFrame(bw, frameHello, &streamHello{Version: streamVersion})
		bw.Flush() // and then nothing for now
	}()
	heir.Inherit(b, time.Minute)
	waitFor(t, "seconds while receiving", func() bool {
		st := heir.Inherited()
		if st.State != "receiving" {
			t.Fatalf("%+v, want receiving", st)
		}
		return st.Seconds > 0
	})
}

// TestBequeathDeadline: an old cache whose time for the objects is up
// still ends the objects cleanly and forwards the purges after them, so
// the successor keeps what came and hears of later purges.
func TestBequeathDeadline(t *testing.T) {
	t.Parallel()
	old, heir := newInheritCache(t, "n1"), newInheritCache(t, "n1")
	for i := range 3 {
		storeObject(t, old, "GET http://origin.test/d"+strconv.Itoa(i), testMeta(time.Now().Add(-time.Second), nil), []byte("x"))
	}
	a, b := net.Pipe()
	old.Bequeath(a, time.Nanosecond) // up before the first object
	heir.Inherit(b, time.Minute)
	if st := waitInherited(t, heir, "done"); st.Objects != 0 || st.Offered != 0 {
		t.Fatalf("%+v, want no objects", st)
	}
	old.PurgeLocal(Purge{URLs: []string{"http://origin.test/d1"}})
	waitFor(t, "the forwarded purge", func() bool { n, _ := heir.plog.size(); return n == 1 })
}

// TestBequeathSendsLateFills: the old process still serves, and fills,
// after it listed its tier and until the successor serves; those objects
// follow the first pass (under the same purge rules) before the end.
// Before, the end went right after the first pass and each of them went
// back to the origin.
func TestBequeathSendsLateFills(t *testing.T) {
	t.Parallel()
	old, heir := newInheritCache(t, "n1"), newInheritCache(t, "n1")
	at := time.Now().Add(-10 * time.Second)
	for i := range 3 {
		storeObject(t, old, "GET http://origin.test/e"+strconv.Itoa(i), testMeta(at, nil), []byte("early"))
	}
	a, b := net.Pipe()
	served := make(chan struct{})
	if !old.BequeathUntil(a, time.Minute, served) || !heir.Inherit(b, time.Minute) {
		t.Fatal("closed")
	}
	waitFor(t, "the first pass", func() bool { return heir.Inherited().Objects == 3 })
	// Filled by the old process while the successor starts.
	storeObject(t, old, "GET http://origin.test/late", testMeta(at, nil), []byte("late"))
	storeObject(t, old, "GET http://origin.test/purged-there", testMeta(at, nil), []byte("x"))
	storeObject(t, old, "GET http://origin.test/purged-here", testMeta(at, nil), []byte("x"))
	if _, err := old.PurgeLocal(Purge{URLs: []string{"http://origin.test/purged-there"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := heir.PurgeLocal(Purge{URLs: []string{"http://origin.test/purged-here"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the purge forwarded while waiting", func() bool { n, _ := heir.plog.size(); return n == 2 })
	if st := heir.Inherited(); st.State != "receiving" {
		t.Fatalf("%+v: the objects ended before the successor served", st)
	}
	close(served)
	st := waitInherited(t, heir, "done")
	if st.Objects != 4 || st.Skipped != 1 || st.Offered != 5 {
		t.Fatalf("inherited %+v, want 4 objects (the late one too) and 1 skipped of 5", st)
	}
	if _, body := lookupBody(t, heir, "GET http://origin.test/late"); string(body) != "late" {
		t.Fatalf("late: %q", body)
	}
	for _, k := range []string{"purged-there", "purged-here"} {
		if m, _ := lookupBody(t, heir, "GET http://origin.test/"+k); m != nil {
			t.Fatalf("%s inherited after its purge", k)
		}
	}
}

// TestBequeathWaitIsBounded: a successor that never says it serves does
// not hold the end past the time for the objects.
func TestBequeathWaitIsBounded(t *testing.T) {
	t.Parallel()
	old, heir := newInheritCache(t, "n1"), newInheritCache(t, "n1")
	storeObject(t, old, "GET http://origin.test/w", testMeta(time.Now().Add(-time.Second), nil), []byte("x"))
	a, b := net.Pipe()
	old.BequeathUntil(a, 100*time.Millisecond, make(chan struct{}))
	heir.Inherit(b, time.Minute)
	if st := waitInherited(t, heir, "done"); st.Objects != 1 {
		t.Fatalf("%+v, want 1 object", st)
	}
}
