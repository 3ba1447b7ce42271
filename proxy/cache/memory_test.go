package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
)

func newTestMemory(t *testing.T, cfg MemoryConfig) *Memory {
	t.Helper()
	m, err := NewMemory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testMeta(cl string) *Meta {
	h := http.Header{"Cache-Control": {"max-age=60"}}
	if cl != "" {
		h.Set("Content-Length", cl)
	}
	return &Meta{Status: 200, Header: h, ResponseTime: t0, RequestTime: t0, Fresh: time.Minute}
}

func mustLock(t *testing.T, m *Memory, key string) Fill {
	t.Helper()
	f, o, err := m.Lock(context.Background(), key, 0)
	if err != nil || o != nil || f == nil {
		t.Fatalf("Lock(%q) = %v, %v, %v; want a fill", key, f, o, err)
	}
	return f
}

// startedFill locks key, starts its fill with limit and returns it with
// a reader of its object from the start.
func startedFill(t *testing.T, m *Memory, key string, limit int64) (Fill, Object, Reader) {
	t.Helper()
	f := mustLock(t, m, key)
	if err := f.Start(testMeta(""), limit); err != nil {
		t.Fatal(err)
	}
	o, _ := m.Lookup(context.Background(), key)
	r, err := o.NewReader(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return f, o, r
}

// waitArmed waits until n lock waiters armed their timers on fc: they
// are waiting.
func waitArmed(t *testing.T, fc *clock.Fake, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for fc.Waiters() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d lock waiters never armed their timers", n)
		}
		time.Sleep(time.Millisecond) // sleep-ok: polling for the waiters' timers
	}
}

// lockAsync runs Lock in a goroutine and returns its result channel.
type lockResult struct {
	f   Fill
	o   Object
	err error
}

func lockAsync(m *Memory, ctx context.Context, key string, wait time.Duration) chan lockResult {
	ch := make(chan lockResult, 1) // one result, read by the test
	go func() {
		f, o, err := m.Lock(ctx, key, wait)
		ch <- lockResult{f, o, err}
	}()
	return ch
}

// TestMemoryFillStreams: a waiter on the lock gets the fill's object when
// its head is published and reads bytes before the fill is complete; the
// object is stored once committed.
func TestMemoryFillStreams(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	f := mustLock(t, m, "k")
	waiter := lockAsync(m, context.Background(), "k", time.Minute)
	if err := f.Start(testMeta("10"), 0); err != nil {
		t.Fatal(err)
	}
	res := <-waiter
	if res.err != nil || res.o == nil || res.f != nil {
		t.Fatalf("waiter got %+v", res)
	}
	r, err := res.o.NewReader(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("hello"))
	buf := make([]byte, 64)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read before commit: %q %v", buf[:n], err)
	}
	if res.o.Len() != -1 {
		t.Fatalf("Len while filling = %d", res.o.Len())
	}
	f.Write([]byte("world"))
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "world" {
		t.Fatalf("rest %q %v", rest, err)
	}
	o, _ := m.Lookup(context.Background(), "k")
	if o == nil || o.Len() != 10 {
		t.Fatalf("stored object %v", o)
	}
	r2, _ := o.NewReader(context.Background(), 3)
	if b, _ := io.ReadAll(r2); string(b) != "loworld" {
		t.Fatalf("read from 3: %q", b)
	}
}

// TestMemoryAbort: a fill that fails gives its readers an error, never
// io.EOF, stores nothing, and wakes lock waiters with ErrFillFailed.
func TestMemoryAbort(t *testing.T) {
	fc := clock.NewFake(t0)
	m := newTestMemory(t, MemoryConfig{Clock: fc})
	f := mustLock(t, m, "k")
	waiter := lockAsync(m, context.Background(), "k", time.Minute)
	waitArmed(t, fc, 1)
	f.Abort(errors.New("upstream reset"))
	if res := <-waiter; !errors.Is(res.err, ErrFillFailed) {
		t.Fatalf("waiter before the head got %+v", res)
	}

	f, o, r := startedFill(t, m, "k", 0)
	f.Write([]byte("part"))
	f.Abort(nil)
	b, err := io.ReadAll(r)
	if !errors.Is(err, ErrIncomplete) || string(b) != "part" {
		t.Fatalf("reader of an aborted fill: %q %v", b, err)
	}
	if o, _ := m.Lookup(context.Background(), "k"); o != nil {
		t.Fatal("an aborted fill was stored")
	}
	if _, err := o.NewReader(context.Background(), 0); err == nil {
		t.Fatal("a new reader of an aborted fill succeeded")
	}
}

// TestMemoryTooLarge: a body over the limit learned mid-body streams whole
// to the readers already reading, is not stored, and frees the lock.
func TestMemoryTooLarge(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	f, _, r := startedFill(t, m, "k", 8)
	got := make(chan []byte, 1) // the reader's whole body
	go func() { b, _ := io.ReadAll(r); got <- b }()
	for range 4 {
		f.Write([]byte("0123456789"))
	}
	if f2, _, err := m.Lock(context.Background(), "k", 0); f2 == nil || err != nil {
		t.Fatalf("the lock is still held after the limit: %v", err)
	} else {
		f2.Abort(nil)
	}
	if err := f.Commit(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Commit = %v, want ErrTooLarge", err)
	}
	if b := <-got; string(b) != strings.Repeat("0123456789", 4) {
		t.Fatalf("reader got %d bytes", len(b))
	}
	if o, _ := m.Lookup(context.Background(), "k"); o != nil {
		t.Fatal("an object over the limit was stored")
	}
}

// TestMemoryStartRefusesDeclaredTooLarge: a head whose Content-Length is
// over the limit (the store's cap, or the caller's when smaller) is not
// started: Start says why (a *NotStorable, too_large), nothing is
// published, and the Abort that follows frees the key.
func TestMemoryStartRefusesDeclaredTooLarge(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cap, lim int64
		cl       string
		refused  bool
	}{
		{"over the store's cap", 10, 0, "11", true},
		{"over the caller's limit", 100, 10, "11", true},
		{"caller's limit over the store's cap", 10, 100, "11", true},
		{"at the cap", 10, 100, "10", false},
		{"no length", 10, 100, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMemory(t, MemoryConfig{MaxBytes: 1 << 20, MaxObjectBytes: tc.cap})
			f, _, err := m.Lock(context.Background(), "k", 0)
			if err != nil {
				t.Fatal(err)
			}
			err = f.Start(testMeta(tc.cl), tc.lim)
			if !tc.refused {
				if err != nil {
					t.Fatalf("Start = %v, want nil", err)
				}
				f.Abort(nil)
				return
			}
			if NotStorableReason(err) != "too_large" {
				t.Fatalf("Start = %v, want a NotStorable too_large", err)
			}
			if o, _ := m.Lookup(context.Background(), "k"); o != nil {
				t.Fatal("a refused head was published")
			}
			f.Abort(err)
			if f2, _, err := m.Lock(context.Background(), "k", 0); f2 == nil {
				t.Fatalf("the key is still locked after the refusal: %v", err)
			} else {
				f2.Abort(nil)
			}
		})
	}
}

// TestMemorySlowReaderCut: a reader of an uncached stream that falls more
// than relayWindow behind is cut off with an error: memory stays bounded.
func TestMemorySlowReaderCut(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	f, o, r := startedFill(t, m, "k", 1)
	chunk := make([]byte, 64<<10)
	for range relayWindow/len(chunk) + 2 {
		f.Write(chunk)
	}
	f.Commit()
	if _, err := io.ReadAll(r); !errors.Is(err, ErrSlowReader) {
		t.Fatalf("slow reader: %v", err)
	}
	mo := o.(*memObject)
	mo.mu.Lock()
	held := len(mo.blocks)
	mo.mu.Unlock()
	if held > 2 {
		t.Fatalf("%d blocks still held with no reader", held)
	}
}

// TestMemoryLockTimeout: a waiter gives up after the lock timeout (fake
// clock) or when its context ends.
func TestMemoryLockTimeout(t *testing.T) {
	fc := clock.NewFake(t0)
	m := newTestMemory(t, MemoryConfig{Clock: fc})
	f := mustLock(t, m, "k")
	defer f.Abort(nil)
	waiter := lockAsync(m, context.Background(), "k", 5*time.Second)
	waitArmed(t, fc, 1)
	fc.Advance(5 * time.Second)
	if res := <-waiter; !errors.Is(res.err, ErrLockTimeout) {
		t.Fatalf("waiter got %+v, want ErrLockTimeout", res)
	}
	ctx, cancel := context.WithCancel(context.Background())
	waiter = lockAsync(m, ctx, "k", time.Hour)
	cancel()
	if res := <-waiter; !errors.Is(res.err, context.Canceled) {
		t.Fatalf("canceled waiter got %+v", res)
	}
	if _, _, err := m.Lock(context.Background(), "k", 0); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("Lock with no wait = %v", err)
	}
}

// TestMemoryRemoveDoomsFill: an invalidation during a fill keeps that fill
// from storing what may be the old content.
func TestMemoryRemoveDoomsFill(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	f := mustLock(t, m, "k")
	f.Start(testMeta(""), 0)
	f.Write([]byte("old"))
	if _, err := m.Remove(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); !errors.Is(err, ErrNotStored) {
		t.Fatalf("Commit after Remove = %v", err)
	}
	if o, _ := m.Lookup(context.Background(), "k"); o != nil {
		t.Fatal("a doomed fill was stored")
	}
}

// TestMemoryDoomFills: DoomFills dooms the fills its match selects, by
// key before their head and by head after, and leaves the others alone.
func TestMemoryDoomFills(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	early := mustLock(t, m, "GET http://a/x")
	tagged := mustLock(t, m, "GET http://b/y")
	meta := testMeta("")
	meta.Header.Set("Surrogate-Key", "t1")
	tagged.Start(meta, 0)
	other := mustLock(t, m, "GET http://c/z")
	other.Start(testMeta(""), 0)
	n := m.DoomFills(func(key string, meta *Meta) bool {
		return strings.HasPrefix(key, "GET http://a/") || meta != nil && meta.Header.Get("Surrogate-Key") == "t1"
	})
	if n != 2 {
		t.Fatalf("doomed %d fills, want 2", n)
	}
	early.Start(testMeta(""), 0)
	for _, c := range []struct {
		f    Fill
		want error
	}{{early, ErrNotStored}, {tagged, ErrNotStored}, {other, nil}} {
		if err := c.f.Commit(); !errors.Is(err, c.want) && err != c.want {
			t.Errorf("Commit = %v, want %v", err, c.want)
		}
	}
	if o, _ := m.Lookup(context.Background(), "GET http://c/z"); o == nil {
		t.Fatal("the fill DoomFills did not select was not stored")
	}
}

func TestPrimaryKey(t *testing.T) {
	v := &Variants{ID: "g1", Fields: []string{"Accept-Encoding"}}
	vk := VariantKey("GET http://a/x", v, http.Header{"Accept-Encoding": {"gzip"}})
	for _, c := range []struct{ in, want string }{
		{"GET http://a/x", "GET http://a/x"},
		{vk, "GET http://a/x"},
		{"GET http://a/x\x00h:X=1", "GET http://a/x\x00h:X=1"},
	} {
		if got := PrimaryKey(c.in); got != c.want {
			t.Errorf("PrimaryKey(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	ctx := WithRequest(context.Background(), &Request{Method: "GET", URI: "/x"})
	if r := RequestFrom(ctx); r == nil || r.URI != "/x" || RequestFrom(context.Background()) != nil {
		t.Fatalf("RequestFrom = %+v", r)
	}
}

// TestMemoryRefresh: a 304 gives the stored object a new head over the
// same body, and a waiter gets the refreshed object.
func TestMemoryRefresh(t *testing.T) {
	fc := clock.NewFake(t0)
	m := newTestMemory(t, MemoryConfig{Clock: fc})
	f := mustLock(t, m, "k")
	f.Start(testMeta("4"), 0)
	f.Write([]byte("body"))
	f.Commit()
	f = mustLock(t, m, "k")
	waiter := lockAsync(m, context.Background(), "k", time.Minute)
	waitArmed(t, fc, 1)
	fresh := testMeta("4")
	fresh.Header.Set("X-Refreshed", "1")
	if err := f.Refresh(fresh); err != nil {
		t.Fatal(err)
	}
	res := <-waiter
	if res.o == nil || res.o.Meta().Header.Get("X-Refreshed") != "1" {
		t.Fatalf("waiter got %+v", res)
	}
	r, _ := res.o.NewReader(context.Background(), 0)
	if b, _ := io.ReadAll(r); string(b) != "body" {
		t.Fatalf("refreshed body %q", b)
	}
	m.Remove(context.Background(), "k")
	if err := mustLock(t, m, "k").Refresh(fresh); !errors.Is(err, ErrNotStored) {
		t.Fatalf("Refresh of nothing = %v", err)
	}
}

// TestMemoryEvictsByBytes: the store stays within MaxBytes, evicting the
// least recently used, and counts evictions.
func TestMemoryEvictsByBytes(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{MaxBytes: 4096, MaxObjectBytes: 1024})
	put := func(key string) {
		f := mustLock(t, m, key)
		f.Start(testMeta(""), 0)
		f.Write(make([]byte, 1000))
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	put("a")
	put("b")
	put("c")
	m.Lookup(context.Background(), "a") // a is now the most recent
	put("d")
	if o, _ := m.Lookup(context.Background(), "b"); o != nil {
		t.Fatal("b, the least recently used, was kept")
	}
	if o, _ := m.Lookup(context.Background(), "a"); o == nil {
		t.Fatal("a, recently used, was evicted")
	}
	st := m.Stats()
	if st.Bytes > 4096 || st.Evictions != 1 || st.Objects != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestLRU: the default Index alone, as a table: which keys remain after
// the operations, in a 10-byte budget.
func TestLRU(t *testing.T) {
	cases := []struct {
		name  string
		ops   func(l *LRU)
		keep  string
		evict uint64
	}{
		{"under budget keeps all", func(l *LRU) { l.Put("a", 1, 4); l.Put("b", 2, 4) }, "a,b", 0},
		{"over budget evicts the coldest", func(l *LRU) { l.Put("a", 1, 4); l.Put("b", 2, 4); l.Put("c", 3, 4) }, "b,c", 1},
		{"a Get protects", func(l *LRU) { l.Put("a", 1, 4); l.Put("b", 2, 4); l.Get("a"); l.Put("c", 3, 4) }, "a,c", 1},
		{"larger than the budget is refused", func(l *LRU) { l.Put("a", 1, 4); l.Put("big", 2, 11) }, "a", 0},
		{"a replaced value is reweighed", func(l *LRU) { l.Put("a", 1, 4); l.Put("b", 2, 4); l.Put("a", 3, 8) }, "a", 1},
		{"a removed key frees its weight", func(l *LRU) { l.Put("a", 1, 8); l.Remove("a"); l.Put("b", 2, 8) }, "b", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLRU(10)
			tc.ops(l)
			var keep []string
			for _, k := range []string{"a", "b", "c", "big"} {
				if _, ok := l.Get(k); ok {
					keep = append(keep, k)
				}
			}
			if strings.Join(keep, ",") != tc.keep || l.Evictions() != tc.evict || l.Weight() > 10 {
				t.Fatalf("kept %v, %d evictions, weight %d; want %s, %d", keep, l.Evictions(), l.Weight(), tc.keep, tc.evict)
			}
		})
	}
}

// refusing is an Index that admits nothing new, like TinyLFU facing a
// newcomer less popular than its victim.
type refusing struct{ *LRU }

func (r refusing) Put(key string, v any, weight int64) bool {
	if _, ok := r.LRU.Get(key); ok {
		return r.LRU.Put(key, v, weight)
	}
	return false
}

// TestMemoryNotAdmitted: a fill its Index does not admit streams whole to
// its readers, Commit says so, and nothing stays under the key.
func TestMemoryNotAdmitted(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{Index: refusing{NewLRU(1 << 20)}})
	f, _, r := startedFill(t, m, "k", 0)
	f.Write([]byte("body"))
	if err := f.Commit(); !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("Commit = %v", err)
	}
	if b, err := io.ReadAll(r); err != nil || string(b) != "body" {
		t.Fatalf("reader: %q %v", b, err)
	}
	if o, _ := m.Lookup(context.Background(), "k"); o != nil {
		t.Fatal("a refused object is served")
	}
}

// TestMemoryConcurrentReaders: many readers of one streaming fill all get
// the identical whole body (run with -race).
func TestMemoryConcurrentReaders(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	f := mustLock(t, m, "k")
	var want bytes.Buffer
	for i := range 2000 {
		want.WriteString(strings.Repeat(string(rune('a'+i%26)), i%97))
	}
	f.Start(testMeta(""), 0)
	var wg sync.WaitGroup
	errs := make(chan error, 16) // one per reader at most
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := m.Lookup(context.Background(), "k")
			if err != nil || o == nil {
				errs <- errors.New("no object under k")
				return
			}
			r, _ := o.NewReader(context.Background(), 0)
			b, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(b, want.Bytes()) {
				errs <- errors.New("a reader got a different body")
			}
		}()
	}
	data := want.Bytes()
	for len(data) > 0 {
		n := min(len(data), 777)
		f.Write(data[:n])
		data = data[n:]
	}
	f.Commit()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestMemoryConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  MemoryConfig
		ok   bool
	}{
		{"zero takes defaults", MemoryConfig{}, true},
		{"negative MaxBytes", MemoryConfig{MaxBytes: -1}, false},
		{"negative MaxObjectBytes", MemoryConfig{MaxObjectBytes: -1}, false},
		{"object larger than the store", MemoryConfig{MaxBytes: 10, MaxObjectBytes: 11}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v", err)
			}
		})
	}
}

// TestPipe: a Pipe's readers read as it is written, and one closed with
// an error fails them rather than ending cleanly.
func TestPipe(t *testing.T) {
	ctx := context.Background()
	p := NewPipe(testMeta(""), 0)
	r, _ := p.Object().NewReader(ctx, 0)
	p.Write([]byte("abc"))
	buf := make([]byte, 8)
	if n, err := r.Read(buf); n != 3 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	p.Write([]byte("de"))
	p.Close()
	if rest, err := io.ReadAll(r); string(rest) != "de" || err != nil || p.Object().Len() != 5 {
		t.Fatalf("rest %q, %v, Len %d", rest, err, p.Object().Len())
	}
	q := NewPipe(testMeta(""), 0)
	r, _ = q.Object().NewReader(ctx, 0)
	q.Write([]byte("x"))
	q.CloseWithError(nil)
	if _, err := io.ReadAll(r); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("a failed pipe read as %v", err)
	}
}

// blocksOf returns br's blocks, at most n bytes, failing the test on an
// error.
func blocksOf(t *testing.T, br BlockReader, n int64) [][]byte {
	t.Helper()
	b, err := br.Blocks(nil, n)
	if err != nil {
		t.Fatalf("Blocks: %v", err)
	}
	return b
}

// TestMemoryBlocks: a reader hands out the held bytes as slices of the
// stored blocks, from its cursor, at most n of them, without waiting,
// and a stored body's slices are the bytes read with Read.
func TestMemoryBlocks(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	f := mustLock(t, m, "k")
	if err := f.Start(testMeta(""), 0); err != nil {
		t.Fatal(err)
	}
	o, _ := m.Lookup(context.Background(), "k")
	r, err := o.NewReader(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	br := r.(BlockReader)
	if got := blocksOf(t, br, -1); len(got) != 0 {
		t.Fatalf("nothing written: %d blocks", len(got))
	}
	body := make([]byte, 200<<10) // no length: blocks of 4, 8, ... 64 KiB
	for i := range body {
		body[i] = byte(i % 251)
	}
	f.Write(body[:5000])
	if got := bytes.Join(blocksOf(t, br, 3000), nil); !bytes.Equal(got, body[:3000]) {
		t.Fatalf("first 3000 bytes while filling: %d bytes, not the body", len(got))
	}
	if got := bytes.Join(blocksOf(t, br, -1), nil); !bytes.Equal(got, body[3000:5000]) {
		t.Fatalf("the rest held while filling: %d bytes, not the body", len(got))
	}
	f.Write(body[5000:])
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := bytes.Join(blocksOf(t, br, -1), nil); !bytes.Equal(got, body[5000:]) {
		t.Fatalf("after the commit: %d bytes, not the rest of the body", len(got))
	}
	o, _ = m.Lookup(context.Background(), "k")
	r2, _ := o.NewReader(context.Background(), 70000)
	blocks := blocksOf(t, r2.(BlockReader), 100000)
	if len(blocks) < 2 || !bytes.Equal(bytes.Join(blocks, nil), body[70000:170000]) {
		t.Fatalf("a range across blocks: %d blocks, not the body", len(blocks))
	}
	if b, _ := io.ReadAll(r2); !bytes.Equal(b, body[170000:]) {
		t.Fatalf("Read after Blocks: %d bytes, not the rest", len(b))
	}
}

// TestMemoryRelayReaderAtBlockEnd: a reader whose cursor stands at the end
// of a block when the fill goes over its limit keeps reading: the relay
// frees that block, and the reader's next Read used to index before the
// first block held, panic with the object's lock held and so hang the
// fill and every reader of the object (found with an 8 MiB body through a
// node whose object cap is 7.5 MiB).
func TestMemoryRelayReaderAtBlockEnd(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	f, _, r := startedFill(t, m, "k", minBlock+1)
	first := bytes.Repeat([]byte("a"), minBlock) // exactly the first block
	f.Write(first)
	buf := make([]byte, minBlock)
	if n, err := io.ReadFull(r, buf); n != minBlock || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	rest := bytes.Repeat([]byte("b"), 3*minBlock)
	f.Write(rest) // over the limit: the relay trims what every reader has passed
	got := make(chan []byte, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("Read panicked: %v", p)
				got <- nil
			}
		}()
		b, _ := io.ReadAll(r)
		got <- b
	}()
	f.Commit()
	if b := <-got; !bytes.Equal(b, rest) {
		t.Fatalf("reader got %d bytes after the relay started, want %d", len(b), len(rest))
	}
}

// TestMemoryReaderPanicReleasesObject: a reader whose Read panics (here
// on a cursor made invalid on purpose; a bug in the cursor code did this
// once, see TestMemoryRelayReaderAtBlockEnd) leaves the object's lock
// free, so the fill and the other readers go on: before, the lock stayed
// held, and the fill, every reader and the node's graceful stop hung.
func TestMemoryReaderPanicReleasesObject(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	f, o, bad := startedFill(t, m, "k", 1<<20)
	good, err := o.NewReader(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("first"))
	bad.(*memReader).bi = 1 << 30 // no such block
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("Read on a broken cursor did not panic")
			}
		}()
		bad.Read(make([]byte, 8))
	}()
	done := make(chan []byte, 1)
	go func() {
		f.Write([]byte(" second"))
		f.Commit()
		b, _ := io.ReadAll(good)
		done <- b
	}()
	select {
	case b := <-done:
		if string(b) != "first second" {
			t.Fatalf("the other reader got %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fill and the other reader hung on the lock the panicking Read held")
	}
}
