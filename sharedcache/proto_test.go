package sharedcache

import (
	"reflect"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/proxy/cache"
	"github.com/vmihailenco/msgpack/v5"
)

// TestWireMetaEncoding: the hand-written encoding of a head reads back as
// msgpack's reflection encoding does, for heads with every field set and
// with none, so nodes of either kind understand each other.
func TestWireMetaEncoding(t *testing.T) {
	type plain wireMeta // no EncodeMsgpack: msgpack's reflection
	for _, w := range []*wireMeta{
		{},
		{Status: 200, Header: map[string][]string{"Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}, "X-Empty": {}},
			RequestTime: time.Date(2026, 12, 5, 12, 0, 0, 1, time.UTC).UnixNano(), ResponseTime: -5, Fresh: time.Hour,
			SWR: time.Minute, SIE: -time.Second, MustRevalidate: true, NoCache: true, VariantsID: "v1", VaryFields: []string{"Accept"}},
		{Status: 404, Header: map[string][]string{}, Fresh: 1<<40 + 7, VaryFields: []string{}},
	} {
		var got [2]plain
		for i, b := range [][]byte{mustMarshal(t, w), mustMarshal(t, (*plain)(w))} {
			if err := msgpack.Unmarshal(b, &got[i]); err != nil {
				t.Fatal(err)
			}
		}
		if !reflect.DeepEqual(got[0], got[1]) {
			t.Fatalf("hand-written encoding reads as %+v, reflection's as %+v", got[0], got[1])
		}
		if w.Status == 200 && !reflect.DeepEqual(got[0], plain(*w)) {
			t.Fatalf("decoded %+v, want %+v", got[0], *w)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWireRequestForwardedIP: the client a trusted proxy reported goes
// along with a fill's request, and a node of the version before reads the
// request as it did (the new field is skipped).
func TestWireRequestForwardedIP(t *testing.T) {
	r := &cache.Request{Method: "GET", Scheme: "http", Host: "h", URI: "/", ClientIP: "10.0.0.1", ForwardedIP: "203.0.113.9"}
	b := mustMarshal(t, toWireRequest(r))
	var back wireRequest
	if err := msgpack.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.request(); got.ForwardedIP != r.ForwardedIP || got.ClientIP != r.ClientIP {
		t.Fatalf("decoded %+v", got)
	}
	type older struct {
		Method   string              `msgpack:"m"`
		Scheme   string              `msgpack:"s"`
		Host     string              `msgpack:"h"`
		URI      string              `msgpack:"u"`
		Header   map[string][]string `msgpack:"f,omitempty"`
		ClientIP string              `msgpack:"c,omitempty"`
	}
	var o older
	if err := msgpack.Unmarshal(b, &o); err != nil || o.ClientIP != r.ClientIP || o.URI != "/" {
		t.Fatalf("an older node reads %+v, %v", o, err)
	}
}
