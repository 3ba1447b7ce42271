package sharedcache

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/pingora-go/pingora-go/internal/msgpackx"
	"github.com/pingora-go/pingora-go/proxy/cache"
)

// Methods on the cluster port.
const (
	// methodGet is a stream: an object by key from its owner (lookup,
	// fill or handoff), as heads then the body.
	methodGet = "sharedcache.get"
	// methodLookup is a unary lookup or handoff: a small complete object
	// comes back inline, in one round trip on the shared connection;
	// anything else is then asked for with methodGet.
	methodLookup = "sharedcache.lookup"
	// methodRemove drops one key on the node called (an invalidation).
	methodRemove = "sharedcache.remove"
	// methodPurge runs a purge on the node called and answers its count.
	methodPurge = "sharedcache.purge"
	// methodStats answers the node's Stats.
	methodStats = "sharedcache.stats"
)

// op is what a get asks of the node called.
type op uint8

const (
	// opLookup: the object stored (or being filled) under the key, if
	// any; never a fill. The caller thinks the node called owns the key.
	opLookup op = iota + 1
	// opFill: the object, filling it from the origin if need be (the
	// owner's lock spans every node's waiters).
	opFill
	// opHandoff: the object stored under the key, whoever owns it now:
	// a new owner asks the key's previous owner before the origin.
	opHandoff
)

// getRequest is a get's body.
type getRequest struct {
	Op  op     `msgpack:"o"`
	Key string `msgpack:"k"`
	// Wait is the longest the caller waits for a fill's head (a lock
	// wait), in microseconds; 0 starts the fill and answers at once.
	Wait int64 `msgpack:"w,omitempty"`
	// Req is the request to fill from (opFill).
	Req *wireRequest `msgpack:"r,omitempty"`
}

// wireRequest is a cache.Request on the wire.
type wireRequest struct {
	Method   string              `msgpack:"m"`
	Scheme   string              `msgpack:"s"`
	Host     string              `msgpack:"h"`
	URI      string              `msgpack:"u"`
	Header   map[string][]string `msgpack:"f,omitempty"`
	ClientIP string              `msgpack:"c,omitempty"`
	// ForwardedIP is new in this version; a node of an older one
	// ignores it (and sends none: the owner then hashes ClientIP).
	ForwardedIP string `msgpack:"x,omitempty"`
}

func toWireRequest(r *cache.Request) *wireRequest {
	return &wireRequest{Method: r.Method, Scheme: r.Scheme, Host: r.Host, URI: r.URI, Header: r.Header, ClientIP: r.ClientIP,
		ForwardedIP: r.ForwardedIP}
}

func (w *wireRequest) request() *cache.Request {
	return &cache.Request{Method: w.Method, Scheme: w.Scheme, Host: w.Host, URI: w.URI, Header: http.Header(w.Header),
		ClientIP: w.ClientIP, ForwardedIP: w.ForwardedIP}
}

// kind is what a head frame says.
type kind uint8

const (
	// kindAccepted: the owner took the key's lock and asked the origin;
	// the next head follows when the fill publishes its head or ends. It
	// tells the caller the owner is alive while the origin is slow.
	kindAccepted kind = iota + 1
	// kindObject: an object follows (Meta), then its body (Len bytes, or
	// until the end of the stream when Len is -1).
	kindObject
	// kindMiss: the key holds nothing (opLookup, opHandoff).
	kindMiss
	// kindFillFailed: the fill ended without storing (cache.ErrFillFailed).
	kindFillFailed
	// kindLockTimeout: the wait for another fill's head ran out, or a
	// fill started for a caller that does not wait (Wait 0).
	kindLockTimeout
	// kindStream: (methodLookup) the object is large or still being
	// filled: ask for it with methodGet.
	kindStream
)

// lookupRequest and lookupReply are methodLookup's messages.
type (
	lookupRequest struct {
		Op  op     `msgpack:"o"`
		Key string `msgpack:"k"`
	}
	lookupReply struct {
		Head head   `msgpack:"h"`
		Body []byte `msgpack:"b,omitempty"`
	}
)

// head is one head frame of a get's stream.
type head struct {
	Kind kind      `msgpack:"k"`
	Meta *wireMeta `msgpack:"m,omitempty"`
	Len  int64     `msgpack:"l,omitempty"`
	// Reason is why a fill stored nothing (kindFillFailed), when the
	// owner knows: its response may not be stored ("private",
	// "too_large", ...; cache.NotStorable). A node that sends none (an
	// older version) leaves the caller with a plain failed fill.
	Reason string `msgpack:"r,omitempty"`
}

// fillFailedHead is the head of a fill that stored nothing, with the
// reason err carries (cache.NotStorableReason), if any.
func fillFailedHead(err error) *head {
	return &head{Kind: kindFillFailed, Reason: cache.NotStorableReason(err)}
}

// fillFailedErr is the error of a fill the owner answered h to:
// cache.ErrFillFailed, wrapping the reason the owner gave.
func fillFailedErr(h *head) error {
	if r := cache.NotStorableReason(&cache.NotStorable{Reason: h.Reason}); r != "" {
		return fmt.Errorf("%w: %w", cache.ErrFillFailed, &cache.NotStorable{Reason: r})
	}
	return cache.ErrFillFailed
}

// wireMeta is a cache.Meta on the wire. Times are Unix nanoseconds:
// objects keep the owner's request and response times, so their age reads
// the same on every node (clocks agree to NTP precision).
type wireMeta struct {
	Status         int                 `msgpack:"s"`
	Header         map[string][]string `msgpack:"h"`
	RequestTime    int64               `msgpack:"rq"`
	ResponseTime   int64               `msgpack:"rs"`
	Fresh          time.Duration       `msgpack:"f"`
	SWR            time.Duration       `msgpack:"w,omitempty"`
	SIE            time.Duration       `msgpack:"e,omitempty"`
	MustRevalidate bool                `msgpack:"mr,omitempty"`
	NoCache        bool                `msgpack:"nc,omitempty"`
	VariantsID     string              `msgpack:"vi,omitempty"`
	VaryFields     []string            `msgpack:"vf,omitempty"`
}

// EncodeMsgpack writes w as the map msgpack's reflection writes for it
// (the same keys; a zero field left out or not makes no difference to a
// reader), without reflection: an owner encodes the head of every object
// it sends to another node, and the reflective encoding of the fields map
// cost about 20 allocations per call. Decoding stays msgpack's own.
func (w *wireMeta) EncodeMsgpack(e *msgpack.Encoder) error {
	ints := []struct {
		k    string
		v    int64
		omit bool
	}{
		{"s", int64(w.Status), false}, {"rq", w.RequestTime, false}, {"rs", w.ResponseTime, false},
		{"f", int64(w.Fresh), false}, {"w", int64(w.SWR), w.SWR == 0}, {"e", int64(w.SIE), w.SIE == 0},
	}
	bools := []struct {
		k string
		v bool
	}{{"mr", w.MustRevalidate}, {"nc", w.NoCache}}
	n := 1 // "h"
	for _, f := range ints {
		n += b2i(!f.omit)
	}
	for _, f := range bools {
		n += b2i(f.v)
	}
	n += b2i(w.VariantsID != "") + b2i(len(w.VaryFields) > 0)
	ew := encodeErr{e: e}
	ew.do(e.EncodeMapLen(n))
	for _, f := range ints {
		if !f.omit {
			ew.do(e.EncodeString(f.k))
			ew.do(e.EncodeInt(f.v))
		}
	}
	for _, f := range bools {
		if f.v {
			ew.do(e.EncodeString(f.k))
			ew.do(e.EncodeBool(true))
		}
	}
	ew.do(e.EncodeString("h"))
	ew.strings(w.Header)
	if w.VariantsID != "" {
		ew.do(e.EncodeString("vi"))
		ew.do(e.EncodeString(w.VariantsID))
	}
	if len(w.VaryFields) > 0 { // omitempty, as reflection does
		ew.do(e.EncodeString("vf"))
		ew.list(w.VaryFields)
	}
	return ew.err
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// encodeErr writes through an Encoder and keeps its first error.
type encodeErr struct {
	e   *msgpack.Encoder
	err error
}

func (w *encodeErr) do(err error) {
	if w.err == nil {
		w.err = err
	}
}

// strings writes a fields map as msgpack's reflection would.
func (w *encodeErr) strings(h map[string][]string) {
	if h == nil {
		w.do(w.e.EncodeNil())
		return
	}
	w.do(w.e.EncodeMapLen(len(h)))
	for k, vs := range h {
		w.do(w.e.EncodeString(k))
		w.list(vs)
	}
}

func (w *encodeErr) list(vs []string) {
	if vs == nil {
		w.do(w.e.EncodeNil())
		return
	}
	w.do(w.e.EncodeArrayLen(len(vs)))
	for _, v := range vs {
		w.do(w.e.EncodeString(v))
	}
}

func toWireMeta(m *cache.Meta) *wireMeta {
	w := &wireMeta{Status: m.Status, Header: m.Header, RequestTime: m.RequestTime.UnixNano(), ResponseTime: m.ResponseTime.UnixNano(),
		Fresh: m.Fresh, SWR: m.StaleWhileRevalidate, SIE: m.StaleIfError, MustRevalidate: m.MustRevalidate, NoCache: m.NoCache}
	if v := m.Variants; v != nil {
		w.VariantsID, w.VaryFields = v.ID, v.Fields
	}
	return w
}

func (w *wireMeta) meta() *cache.Meta {
	h := http.Header(w.Header)
	if h == nil {
		h = http.Header{}
	}
	m := &cache.Meta{Status: w.Status, Header: h, RequestTime: time.Unix(0, w.RequestTime), ResponseTime: time.Unix(0, w.ResponseTime),
		Fresh: w.Fresh, StaleWhileRevalidate: w.SWR, StaleIfError: w.SIE, MustRevalidate: w.MustRevalidate, NoCache: w.NoCache}
	if w.VariantsID != "" {
		m.Variants = &cache.Variants{ID: w.VariantsID, Fields: w.VaryFields}
	}
	return m
}

// maxHead bounds one head frame (the stored fields of one response).
const maxHead = 1 << 20

var errHeadTooLarge = errors.New("sharedcache: head frame over 1 MiB")

// writeHead sends h as a 4-byte length and its msgpack encoding.
func writeHead(w io.Writer, h *head) error {
	b, err := encodeHead(h)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// encodeHead returns h's frame: a 4-byte length and its msgpack encoding.
func encodeHead(h *head) ([]byte, error) {
	b, err := msgpack.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("sharedcache: encode head: %w", err)
	}
	if len(b) > maxHead {
		return nil, errHeadTooLarge
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	return append(out, b...), nil
}

// readHead reads one head frame.
func readHead(r *bufio.Reader) (*head, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxHead {
		return nil, errHeadTooLarge
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	h := new(head)
	if err := msgpackx.Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("sharedcache: decode head: %w", err)
	}
	return h, nil
}
