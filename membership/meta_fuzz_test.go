package membership

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/hashicorp/memberlist"
)

// FuzzDecodeMeta feeds arbitrary bytes to the decoder of gossiped
// metadata, which any node that can reach the gossip port may send. It
// never panics; input over memberlist's MetaMaxSize is refused with
// ErrMetaTooLarge; a refusal leaves nothing but the name; and what it
// accepts encodes, and decodes again to the same Meta. (Calling msgpack on
// what checkLengths refuses, to compare, is left to
// TestCheckLengthsAcceptsMsgpack: msgpack's 16 MB allocations for a
// declared length got the fuzzing process killed for memory.) Seeds live in
// testdata/fuzz/FuzzDecodeMeta (issue 11 item 5).
func FuzzDecodeMeta(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta("n", b)
		if len(b) > memberlist.MetaMaxSize && !errors.Is(err, ErrMetaTooLarge) {
			t.Fatalf("%d bytes: err %v, want ErrMetaTooLarge", len(b), err)
		}
		if err != nil {
			if !reflect.DeepEqual(m, Meta{Name: "n"}) {
				t.Fatalf("refused (%v) but returned %+v", err, m)
			}
			return
		}
		enc, err := encodeMeta(m)
		if err != nil {
			t.Fatalf("accepted %+v, which does not encode: %v", m, err)
		}
		again, err := decodeMeta("n", enc)
		if err != nil {
			t.Fatalf("own encoding %x refused: %v", enc, err)
		}
		if !sameMeta(again, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, m)
		}
	})
}

// sameMeta compares as the ring and the admin API read a Meta: an empty
// address list is no list, and NaN load equals NaN.
func sameMeta(a, b Meta) bool {
	if len(a.Addrs.Proxy) == 0 && len(b.Addrs.Proxy) == 0 {
		a.Addrs.Proxy, b.Addrs.Proxy = nil, nil
	}
	if math.Float32bits(a.Load.RPS) == math.Float32bits(b.Load.RPS) {
		a.Load.RPS, b.Load.RPS = 0, 0
	}
	return reflect.DeepEqual(a, b)
}
