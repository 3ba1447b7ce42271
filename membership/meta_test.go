package membership

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// largestMeta is metadata at the largest realistic values (issue 5 item 2).
func largestMeta() Meta {
	v6 := func(port string) string { return "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:" + port }
	return Meta{
		Name:    strings.Repeat("n", 64),
		Version: "v10.20.30-rc.12+g0123456789abcdef0123456789abcdef01234567.dirty",
		Addrs: Addrs{
			Proxy: []string{v6("8080"), v6("8443"), v6("18080"), v6("18443")},
			Admin: v6("9090"), Cluster: v6("7947"), Raft: v6("7948"),
		},
		Zone:           "eu-central-1a-rack-42",
		Weight:         maxWeight,
		State:          StateDraining,
		Health:         Health{Healthy: 1 << 20, Total: 1 << 20},
		Load:           Load{InFlight: 1 << 40, RPS: 1e9},
		ConfigVersion:  1 << 62,
		RaftState:      true,
		RaftRecovering: true,
	}
}

func TestMetaFitsAtLargestRealisticValues(t *testing.T) {
	m := largestMeta()
	b, err := encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("largest realistic metadata: %d of 512 bytes", len(b))
	got, err := decodeMeta(m.Name, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Addrs.Proxy[3] != m.Addrs.Proxy[3] || got.ConfigVersion != m.ConfigVersion || got.State != m.State || got.Name != m.Name ||
		!got.RaftRecovering {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestMetaTooLargeFailsClearly(t *testing.T) {
	m := largestMeta()
	m.Addrs.Proxy = append(m.Addrs.Proxy, m.Addrs.Proxy...)
	if _, err := encodeMeta(m); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("err = %v, want ErrMetaTooLarge", err)
	}
	c, err := New(Config{Name: "x", BindAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.UpdateMeta(func(mm *Meta) { *mm = m })
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("UpdateMeta err = %v, want ErrMetaTooLarge", err)
	}
	if c.Meta().State != StateStarting {
		t.Fatal("refused update was applied")
	}
	if _, err := New(Config{Name: "x", Meta: m}); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("New with oversized meta: %v", err)
	}
}

// TestDecodeMetaRejectsOversize: received metadata over memberlist's limit
// is refused, even when it decodes (memberlist checks only what it sends).
func TestDecodeMetaRejectsOversize(t *testing.T) {
	ok, err := encodeMeta(Meta{State: StateReady})
	if err != nil {
		t.Fatal(err)
	}
	padded := append(ok, make([]byte, 513-len(ok))...) // trailing msgpack nils
	for i := len(ok); i < len(padded); i++ {
		padded[i] = 0xc0
	}
	if _, err := decodeMeta("x", padded[:512]); err != nil {
		t.Fatalf("512 bytes: %v", err)
	}
	if m, err := decodeMeta("x", padded); !errors.Is(err, ErrMetaTooLarge) || m.State != "" {
		t.Fatalf("513 bytes: %+v, %v; want ErrMetaTooLarge and nothing decoded", m, err)
	}
}

// TestDecodeMetaBoundsAllocation: a declared length (array, map, string)
// beyond what the input holds is refused before msgpack allocates for it,
// by decodeMeta, clusterIDOf and decodeSync, the decoders of what peers
// send; msgpack alone made 12 bytes cost 16 MB (FuzzDecodeMeta).
func TestDecodeMetaBoundsAllocation(t *testing.T) {
	for _, b := range [][]byte{
		{metaFormat, 0x81, 0xa1, 'a', 0x81, 0xa1, 'p', 0xdd, 0xff, 0xff, 0xff, 0xff}, // proxy addrs: 2^32-1 strings
		{metaFormat, 0x81, 0xa1, 'a', 0x81, 0xa1, 'p', 0xdc, 0xff, 0xff},             // 65535 strings
		{metaFormat, 0x81, 0xa1, 'v', 0xdb, 0x00, 0x0f, 0xff, 0xff},                  // a 1 MiB version string
		{metaFormat, 0x81, 0xa1, 'q', 0xc6, 0x00, 0x0f, 0xff, 0xff},                  // 1 MiB of bin under an unknown key
		{metaFormat, 0xdf, 0x00, 0x0f, 0xff, 0xff},                                   // a map of 2^20 pairs
	} {
		// TotalAlloc counts every goroutine's allocations (a gossip
		// goroutine an earlier test left winding down, the runtime's
		// own): the least of five tries is the decoding's.
		least := uint64(math.MaxUint64)
		for range 5 {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := decodeMeta("x", b)
			id := clusterIDOf(b)
			_, serr := decodeSync(append([]byte{syncMsgType}, b[1:]...))
			runtime.ReadMemStats(&after)
			if err == nil || id != "" || serr == nil {
				t.Fatalf("%x accepted: %v, cluster id %q, sync %v", b, err, id, serr)
			}
			least = min(least, after.TotalAlloc-before.TotalAlloc)
		}
		if least > 64<<10 {
			t.Errorf("%x: decoding allocated %d bytes", b, least)
		}
	}
}

// TestCheckLengthsAcceptsMsgpack: every msgpack format the library writes
// (fixint to int64, floats, str/bin 8-32, array/map 16-32, fixext and ext
// from time.Time) passes checkLengths, and of every truncation of a mixed
// value it refuses only what msgpack cannot decode either.
func TestCheckLengthsAcceptsMsgpack(t *testing.T) {
	long := func(n int) string { return strings.Repeat("s", n) }
	many := func(n int) []any { return make([]any, n) }
	manyMap := func(n int) map[string]int {
		m := make(map[string]int, n)
		for i := range n {
			m[strconv.Itoa(i)] = i
		}
		return m
	}
	small := []any{-5, 100, 200, 40000, 1 << 20, 1 << 40, -100, -40000, -1 << 20, -1 << 40, float32(1.5), 2.5,
		"", long(40), long(300), []byte{1}, make([]byte, 300), nil, true, false,
		map[string]any{"a": 1}, manyMap(20), many(20), time.Unix(1, 0), time.Unix(1, 5), time.Unix(1<<40, 5)}
	big := []any{long(70000), make([]byte, 70000), many(70000), manyMap(70000)}
	for _, v := range append(slices.Clone(small), big...) {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkLengths(b); err != nil {
			t.Errorf("%T of %d bytes (format %#x): %v", v, len(b), b[0], err)
		}
	}
	b, err := msgpack.Marshal(small)
	if err != nil {
		t.Fatal(err)
	}
	for k := range len(b) {
		var v any
		if checkLengths(b[:k]) != nil && msgpack.Unmarshal(b[:k], &v) == nil {
			t.Errorf("%d of %d bytes: refused, but msgpack decodes them", k, len(b))
		}
	}
}

func TestDecodeMetaRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {0}, {metaFormat, 0xc1}, {metaFormat, 0xdf, 0xff, 0xff, 0xff, 0xff}} {
		if _, err := decodeMeta("x", b); err == nil {
			t.Errorf("decodeMeta(%x) succeeded", b)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Name: "a"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]Config{
		"Name":      {},
		"BindAddr":  {Name: "a", BindAddr: "nope"},
		"SecretKey": {Name: "a", SecretKey: []byte("short")},
		"Profile":   {Name: "a", Profile: "wan"},
		"Weight":    {Name: "a", Meta: Meta{Weight: 101}},
		"Label":     {Name: "a", Label: strings.Repeat("l", 300)},
	}
	for field, c := range bad {
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v, want it to name the field", field, err)
		}
	}
}

// TestConfigFieldsDocumentDefaults walks Config with go/ast (STYLE habit 4).
func TestConfigFieldsDocumentDefaults(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Config" {
			return true
		}
		for _, fld := range ts.Type.(*ast.StructType).Fields.List {
			if fld.Doc == nil || !strings.Contains(fld.Doc.Text(), "default") {
				t.Errorf("Config.%s: comment lacks its default", fld.Names[0].Name)
			}
		}
		return false
	})
}
