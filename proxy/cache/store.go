package cache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// Store keeps cached responses by key and coordinates their fills. An
// implementation may be local (Memory) or remote (the cluster tier, where a
// key's owner holds the object and the lock for every node), so every
// method takes a context and may fail; the engine then serves the request
// as if the cache were not there.
//
// The engine's calls carry the client request in their context
// (RequestFrom), so a store whose fills happen elsewhere can send it
// along. The methods are safe for concurrent use.
type Store interface {
	// Lookup returns the object stored under key: a complete one, or one
	// another request is still filling (its body then streams as the fill
	// writes it). It returns nil and no error when key holds nothing.
	// The engine looks a key up again after Lock gave it the fill, with
	// ctx marked by WithRecheck.
	Lookup(ctx context.Context, key string) (Object, error)
	// Lock asks to fill key; it is the cache lock (collapsed forwarding).
	// When no fill of key is under way the caller gets the Fill and must
	// end it (Commit, Refresh or Abort). When one is, Lock waits for that
	// fill's head, at most wait and while ctx lasts, and returns the
	// fill's Object, whose body streams as it is written. A waiter is
	// never made the filler: when the wait runs out (or wait is 0) Lock
	// returns ErrLockTimeout, and when the fill ends without storing
	// (its upstream failed, or the response may not be stored) it returns
	// ErrFillFailed; the caller then goes to the origin itself without
	// storing.
	Lock(ctx context.Context, key string, wait time.Duration) (Fill, Object, error)
	// Remove drops the object stored under key and keeps a fill of key
	// under way from storing (an invalidation or purge must not be undone
	// by a fill that started before it). It reports whether an object was
	// dropped.
	Remove(ctx context.Context, key string) (bool, error)
}

// Object is a stored response: its head and a body that can be read from
// any offset, any number of times, concurrently, also while it is being
// filled.
type Object interface {
	// Meta returns the stored head. The caller must not change it.
	Meta() *Meta
	// Len returns the body's length once the object is complete, -1 while
	// it is being filled.
	Len() int64
	// NewReader returns a reader of the body from byte off. On an object
	// still being filled, Read waits for more bytes while ctx lasts; a
	// fill that fails gives the reader an error, never a short body
	// ending in io.EOF.
	NewReader(ctx context.Context, off int64) (Reader, error)
}

// Reader reads an Object's body.
type Reader interface {
	io.ReadCloser
	// Buffered returns how many bytes Read can return without waiting, so
	// a caller streaming to a client flushes only before it would wait.
	Buffered() int
}

// BlockReader is a Reader whose body is held in memory in blocks that
// never change once written. A writer sends the blocks from where they
// are, the response's head and body in one gathered write (writev),
// instead of copying them through a buffer. The memory store's readers
// are BlockReaders.
type BlockReader interface {
	Reader
	// Blocks appends to dst the bytes held from the cursor on, at most n
	// (n < 0: all of them), as slices of the stored blocks, and moves the
	// cursor past them. It never waits: on an object still being filled it
	// returns what is held so far. The caller must not change the bytes;
	// they stay valid after Close. It fails (ErrSlowReader) for a reader
	// that can no longer get every byte from its cursor on, also on an
	// object whose Len says complete: the caller must not send what it
	// got as the whole body.
	Blocks(dst [][]byte, n int64) ([][]byte, error)
}

// Fill writes one object while readers may already read it. Its methods
// are called from one goroutine. It has five methods, more than the usual
// three, because it is an object's whole write side: the head, the body,
// two ways to end it, and the head-only refresh that revalidation needs.
type Fill interface {
	// Start publishes the head: Lookup and Lock waiters get the object
	// from now on, its body as it is written. limit caps the body in
	// bytes (0 or over the store's own cap: that cap). A head whose
	// Content-Length is over it is refused before anything is published:
	// Start returns a *NotStorable with the reason "too_large", and the
	// caller ends the fill with Abort (passing that error on tells the
	// key's waiters why). A body without a Content-Length that grows past
	// the limit is not stored: readers already reading it still get the
	// whole body or an error, and Commit returns ErrTooLarge.
	Start(m *Meta, limit int64) error
	// Write appends body bytes after Start.
	Write(p []byte) (int, error)
	// Commit ends the body: the object is stored, complete. It returns
	// ErrTooLarge for a body over the limit, ErrNotStored when the key
	// was removed during the fill, and ErrNotAdmitted when the store chose
	// not to keep it; readers get the whole body in every case.
	Commit() error
	// Refresh, instead of Start, replaces the head of the object stored
	// under the key and keeps its body (a 304 revalidated it, RFC 9111
	// §4.3.4), then ends the fill. It returns ErrNotStored when the key
	// holds no complete object any more.
	Refresh(m *Meta) error
	// Abort ends the fill without storing: readers of the body get err
	// (ErrIncomplete when nil), and Lock waiters get ErrFillFailed. It
	// does nothing after the fill ended.
	Abort(err error)
}

// Sentinel errors of a Store.
var (
	// ErrLockTimeout is returned by Lock when the wait for another fill's
	// head ran out.
	ErrLockTimeout = errors.New("cache: lock wait timed out")
	// ErrFillFailed is returned by Lock when the fill waited for ended
	// without storing; wrapped with the fill's *NotStorable when it says
	// why (NotStorableReason).
	ErrFillFailed = errors.New("cache: the fill waited for failed")
	// ErrTooLarge is returned by Commit when the body passed the limit.
	ErrTooLarge = errors.New("cache: object over the size limit")
	// ErrNotStored is returned by Commit and Refresh when the key was
	// removed during the fill, or holds nothing to refresh.
	ErrNotStored = errors.New("cache: not stored")
	// ErrNotAdmitted is returned by Commit and Refresh when the store's
	// admission policy did not keep the object (TinyLFU judged it less
	// popular than what it would evict).
	ErrNotAdmitted = errors.New("cache: not admitted")
	// ErrIncomplete is what readers get from a fill aborted without an
	// error of its own.
	ErrIncomplete = errors.New("cache: body incomplete")
	// ErrSlowReader is returned to a reader of an object that streams
	// through uncached (over its limit) when it falls too far behind the
	// fill: its bytes are no longer held.
	ErrSlowReader = errors.New("cache: reader fell behind an uncached stream")
)

// Meta is a stored response's head and what freshness needs, decided when
// it was stored (RFC 9111 §4.2).
type Meta struct {
	// Status is the response status; 0 on a Variants index entry.
	Status int
	// Header holds the end-to-end fields as received, Date added when the
	// origin sent none. Keys are canonical.
	Header http.Header
	// RequestTime and ResponseTime are when the request that got the
	// response was sent and when its head arrived (§4.2.3).
	RequestTime, ResponseTime time.Time
	// Fresh is the freshness lifetime (§4.2.1, or heuristic §4.2.2, or as
	// a ResponseCacheFilter set it).
	Fresh time.Duration
	// StaleWhileRevalidate and StaleIfError are the RFC 5861 windows past
	// Fresh during which the response may be served stale.
	StaleWhileRevalidate, StaleIfError time.Duration
	// MustRevalidate forbids serving it stale (must-revalidate,
	// proxy-revalidate, or s-maxage, §4.2.4).
	MustRevalidate bool
	// NoCache requires validation before every use (response no-cache,
	// §5.2.2.4).
	NoCache bool
	// Variants is set on an index entry (no body, Status 0): the
	// responses for the key vary on request fields and live under
	// VariantKey keys.
	Variants *Variants
}

// Variants says which request fields select a stored response (Vary,
// §4.1), and under which index generation the variants are keyed: a new
// index (after an invalidation, or a changed Vary) gets a new ID, so its
// predecessor's variants are never found again.
type Variants struct {
	ID     string
	Fields []string
}

// Stats are a store's figures, for metrics and status pages.
type Stats struct {
	Objects   int    // complete objects held
	Bytes     int64  // bytes they weigh (bodies, heads, keys)
	MaxBytes  int64  // the cap on Bytes
	Evictions uint64 // objects dropped to make room, ever
	Fills     int    // fills under way
}

// StatsReporter is a Store that reports Stats; the proxy exports them as
// metrics when its store implements it.
type StatsReporter interface {
	Stats() Stats
}

// NotStorable is what a fill is aborted with when its response may not be
// stored, with why: the response's own reason, as Cache-Status's detail
// names it ("private", "no-store", "too_large", "filter", ...). Lock
// waiters of the fill get ErrFillFailed wrapping it, and a cluster store
// carries it from the key's owner to the node that asked.
type NotStorable struct{ Reason string }

func (e *NotStorable) Error() string { return "cache: response not storable (" + e.Reason + ")" }

// NotStorableReason returns the reason of the *NotStorable in err's
// chain, "" when there is none or it is not a short token (lowercase
// letters, digits, '-' and '_'; at most 32 bytes): it may come from
// another node, and it goes into a response field.
func NotStorableReason(err error) string {
	var ns *NotStorable
	if !errors.As(err, &ns) || len(ns.Reason) > 32 {
		return ""
	}
	for _, c := range []byte(ns.Reason) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return ""
		}
	}
	return ns.Reason
}
