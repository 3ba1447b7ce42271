package ketama

import (
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

func weightOne(addrs ...string) []Bucket {
	b := make([]Bucket, len(addrs))
	for i, a := range addrs {
		b[i] = Bucket{Addr: a, Weight: 1}
	}
	return b
}

func nineServers() []Bucket {
	b := make([]Bucket, 9)
	for i := range b {
		b[i] = Bucket{Addr: fmt.Sprintf("10.0.0.%d:443", i+1), Weight: 100}
	}
	return b
}

// TestNginxTrace replays the request log nginx wrote with
// "hash $request_uri consistent" over nine servers of weight 100.
func TestNginxTrace(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/sample-nginx-upstream.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// The published trace is described as 1,000 rows; it holds 1,001 (the
	// last line has no newline, so wc -l says 1000). Guard against a
	// truncated copy, not an exact count.
	if len(rows) < 1000 {
		t.Fatalf("trace has %d rows, want at least 1000", len(rows))
	}
	buckets := nineServers()
	c := New(buckets)
	for n, row := range rows {
		i, ok := c.NodeString(row[0])
		if !ok || buckets[i].Addr != row[1] {
			t.Errorf("row %d: %s -> %s (ok=%v), nginx chose %s", n+1, row[0], buckets[i].Addr, ok, row[1])
		}
		if j, _ := c.Node([]byte(row[0])); j != i {
			t.Errorf("row %d: Node=%d NodeString=%d", n+1, j, i)
		}
	}
	t.Logf("all %d trace rows map to nginx's server", len(rows))
}

func TestSmallVectors(t *testing.T) {
	t.Parallel()
	c := New(weightOne("127.0.0.1:7777", "127.0.0.1:7778"))
	tests := []struct {
		key  string
		want int
	}{
		{"/some/path", 1},
		{"/some/longer/path", 0},
		{"/g", 0},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			t.Parallel()
			got, ok := c.NodeString(tc.key)
			if !ok || got != tc.want {
				t.Errorf("NodeString(%q) = %d, %v; want %d", tc.key, got, ok, tc.want)
			}
		})
	}
}

func TestWalkDoghash(t *testing.T) {
	t.Parallel()
	buckets := weightOne("127.0.0.1:7777", "127.0.0.1:7778", "127.0.0.1:7779")
	c := New(buckets)
	want := []string{"7778", "7779", "7779", "7777", "7777", "7778", "7778", "7779"}
	w := c.Walk([]byte("doghash"))
	for n, port := range want {
		i, ok := w.Next()
		if !ok || buckets[i].Addr != "127.0.0.1:"+port {
			t.Fatalf("step %d: got %d (ok=%v), want port %s", n, i, ok, port)
		}
	}
	ws := c.WalkString("doghash")
	steps := 0
	for _, ok := ws.Next(); ok; _, ok = ws.Next() {
		steps++
	}
	if steps != c.Len() {
		t.Errorf("walk made %d steps, want one full turn of %d", steps, c.Len())
	}
	got := c.Distinct([]byte("doghash"), make([]int, 5))
	if fmt.Sprint(got) != "[1 2 0]" {
		t.Errorf("Distinct = %v, want [1 2 0]", got)
	}
}

func TestEmptyRing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		buckets []Bucket
	}{
		{"nil", nil},
		{"zero weights", []Bucket{{"a:1", 0}, {"b:1", -3}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := New(tc.buckets)
			if i, ok := c.NodeString("k"); ok {
				t.Errorf("NodeString on empty ring = %d, true", i)
			}
			if i, ok := c.Node(nil); ok {
				t.Errorf("Node on empty ring = %d, true", i)
			}
			w := c.Walk([]byte("k"))
			if _, ok := w.Next(); ok {
				t.Error("Walk on empty ring yielded a point")
			}
			if got := c.Distinct([]byte("k"), make([]int, 3)); len(got) != 0 {
				t.Errorf("Distinct on empty ring = %v", got)
			}
			if c.Len() != 0 || c.Servers() != 0 {
				t.Errorf("Len=%d Servers=%d, want 0 0", c.Len(), c.Servers())
			}
		})
	}
	var w Walker
	if _, ok := w.Next(); ok {
		t.Error("zero Walker yielded a point")
	}
}

func TestWeightsAndDuplicates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		buckets     []Bucket
		wantLen     int
		wantServers int
	}{
		{"weights", []Bucket{{"a:1", 1}, {"b:1", 3}, {"c:1", 0}}, 640, 2},
		// Identical addresses produce identical chains: every point of the
		// second is an exact duplicate, and the first generated wins.
		{"same addr twice", []Bucket{{"a:1", 2}, {"a:1", 2}}, 320, 1},
		{"same addr lighter first", []Bucket{{"a:1", 1}, {"a:1", 2}}, 320, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := New(tc.buckets)
			if c.Len() != tc.wantLen || c.Servers() != tc.wantServers {
				t.Errorf("Len=%d Servers=%d, want %d %d", c.Len(), c.Servers(), tc.wantLen, tc.wantServers)
			}
			for p := 1; p < c.Len(); p++ {
				if c.hashes[p-1] >= c.hashes[p] {
					t.Fatalf("points %d,%d not strictly increasing", p-1, p)
				}
			}
		})
	}
	// With a lighter duplicate first, its 160 points are a prefix of the
	// heavier chain and win; the heavier bucket keeps only its other 160.
	c := New([]Bucket{{"a:1", 1}, {"a:1", 2}})
	counts := [2]int{}
	for _, n := range c.nodes {
		counts[n]++
	}
	if counts != [2]int{160, 160} {
		t.Errorf("point owners = %v, want [160 160]", counts)
	}
}

func TestSplitAddr(t *testing.T) {
	t.Parallel()
	tests := []struct{ addr, host, port string }{
		{"10.0.0.1:443", "10.0.0.1", "443"},
		{"[::1]:80", "[::1]", "80"},
		{"::1:80", "::1", "80"},
		{"example.com", "example.com", ""},
		{"UNIX:/tmp/sock", "/tmp/sock", ""},
		{"", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			t.Parallel()
			h, p := splitAddr(tc.addr)
			if h != tc.host || p != tc.port {
				t.Errorf("splitAddr(%q) = %q, %q; want %q, %q", tc.addr, h, p, tc.host, tc.port)
			}
		})
	}
}

// TestAddServerMovesFewKeys checks the consistent-hashing promise: adding a
// tenth server moves about a tenth of the keys, all of them to the new one.
func TestAddServerMovesFewKeys(t *testing.T) {
	t.Parallel()
	nine := nineServers()
	ten := append(nineServers(), Bucket{Addr: "10.0.0.10:443", Weight: 100})
	before, after := New(nine), New(ten)
	rng := rand.New(rand.NewPCG(1, 2))
	const keys = 10000
	moved := 0
	for range keys {
		k := "/" + strconv.FormatUint(rng.Uint64(), 16)
		a, _ := before.NodeString(k)
		b, _ := after.NodeString(k)
		if a != b {
			moved++
			if b != 9 {
				t.Fatalf("key %s moved from %d to %d, not to the new server", k, a, b)
			}
		}
	}
	frac := float64(moved) / keys
	t.Logf("adding a 10th server moved %d of %d keys (%.4f, ideal 0.1)", moved, keys, frac)
	if frac < 0.05 || frac > 0.20 {
		t.Errorf("moved fraction %.4f outside 0.05..0.20", frac)
	}
}

func TestNoAllocs(t *testing.T) {
	c := New(nineServers())
	key := "/81fa1d251d605775d647b5b55565e71526d4cef6"
	bkey := []byte(key)
	dst := make([]int, 3)
	tests := []struct {
		name string
		f    func()
	}{
		{"Node", func() { c.Node(bkey) }},
		{"NodeString", func() { c.NodeString(key) }},
		{"Walk+Next", func() {
			w := c.WalkString(key)
			for range 10 {
				w.Next()
			}
		}},
		{"Distinct", func() { c.Distinct(bkey, dst) }},
		{"DistinctString", func() { c.DistinctString(key, dst) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if a := testing.AllocsPerRun(1000, tc.f); a != 0 {
				t.Errorf("%s allocates %v times per call", tc.name, a)
			}
		})
	}
}
