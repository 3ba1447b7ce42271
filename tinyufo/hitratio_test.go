package tinyufo

import (
	"container/list"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pingora-go/pingora-go/internal/zipf"
)

// lru is a plain LRU of unit-weight keys, the baseline TinyUFO is measured
// against (Pingora's table compares with the lru crate).
type lru struct {
	cap   int
	order *list.List // front: most recent
	index map[int32]*list.Element
}

func newLRU(n int) *lru {
	return &lru{cap: n, order: list.New(), index: make(map[int32]*list.Element, n)}
}

func (l *lru) get(k int32) bool {
	el, ok := l.index[k]
	if ok {
		l.order.MoveToFront(el)
	}
	return ok
}

func (l *lru) put(k int32) {
	if l.order.Len() >= l.cap {
		old := l.order.Back()
		l.order.Remove(old)
		delete(l.index, old.Value.(int32))
	}
	l.index[k] = l.order.PushFront(k)
}

// The workload of Pingora's bench_hit_ratio: 10,000 keys, 5,000,000
// zipf-distributed requests, a Get then a Put on miss, every weight 1.
const (
	hitItems    = 10_000
	hitRequests = 5_000_000
)

var (
	hitSizes     = []float64{0.005, 0.01, 0.05, 0.1, 0.25}
	hitExponents = []float64{0.9, 1.0, 1.2}
	// pingoraTinyUFO is TinyUFO's hit ratio (%) published in Pingora's
	// tinyufo/README.md and benches/bench_hit_ratio.rs for s = 0.9 and 1.0
	// (the README's s = 1 row; the bench has no s = 1.2 row).
	pingoraTinyUFO = map[float64][]float64{
		0.9: {33.22, 40.00, 57.75, 66.28, 78.49},
		1.0: {45.26, 52.35, 68.89, 75.98, 85.34},
	}
)

func keyNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "/assets/" + strconv.Itoa(i) + ".js"
	}
	return names
}

// replay runs trace through a TinyUFO cache of size entries and an LRU of
// the same size and returns their hit ratios in percent.
func replay(tb testing.TB, trace []int32, names []string, size int) (ufo, base float64) {
	c, err := New[struct{}](Config{Capacity: int64(size), EstimatedEntries: size})
	if err != nil {
		tb.Fatal(err)
	}
	l := newLRU(size)
	var ch, lh int
	for _, k := range trace {
		if _, ok := c.Get(names[k]); ok {
			ch++
		} else {
			c.Put(names[k], struct{}{}, 1)
		}
		if l.get(k) {
			lh++
		} else {
			l.put(k)
		}
	}
	n := float64(len(trace))
	return 100 * float64(ch) / n, 100 * float64(lh) / n
}

func zipfTrace(tb testing.TB, s float64, m int) []int32 {
	z, err := zipf.New(hitItems, s, 2024)
	if err != nil {
		tb.Fatal(err)
	}
	return z.Trace(m)
}

// TestHitRatioTable prints the hit-ratio table of tinyufo/README.md and
// checks each cell: TinyUFO beats LRU, and where Pingora published a
// figure, comes within 1 percentage point of it. The full table (5 M
// requests per cell) runs only with TINYUFO_HITRATIO=1:
//
//	TINYUFO_HITRATIO=1 go test -run TestHitRatioTable -v ./tinyufo/
func TestHitRatioTable(t *testing.T) {
	if os.Getenv("TINYUFO_HITRATIO") == "" {
		t.Skip("set TINYUFO_HITRATIO=1 for the 15 × 5 M request table (about a minute)")
	}
	names := keyNames(hitItems)
	var out strings.Builder
	fmt.Fprintln(&out, "| zipf s | cache size | TinyUFO (Go) | LRU | TinyUFO − LRU | Pingora TinyUFO | Go − Pingora |")
	fmt.Fprintln(&out, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, s := range hitExponents {
		trace := zipfTrace(t, s, hitRequests)
		for i, frac := range hitSizes {
			size := int(frac*hitItems + 0.5)
			ufo, base := replay(t, trace, names, size)
			pub, diff := "—", "—"
			if p, ok := pingoraTinyUFO[s]; ok {
				pub, diff = fmt.Sprintf("%.2f %%", p[i]), fmt.Sprintf("%+.2f pp", ufo-p[i])
				if ufo < p[i]-1 || ufo > p[i]+1 {
					t.Errorf("s=%.1f size %.1f%%: %.2f%%, Pingora %.2f%%: more than 1 pp apart", s, 100*frac, ufo, p[i])
				}
			}
			if ufo <= base {
				t.Errorf("s=%.1f size %.1f%%: TinyUFO %.2f%% not above LRU %.2f%%", s, 100*frac, ufo, base)
			}
			fmt.Fprintf(&out, "| %.1f | %g %% | %.2f %% | %.2f %% | %+.2f pp | %s | %s |\n",
				s, 100*frac, ufo, base, ufo-base, pub, diff)
		}
	}
	t.Log("\n" + out.String())
}

// TestHitRatioQuick is three cells of the table's s = 1.0 row on 1 M
// requests, run every time: TinyUFO stays within 1.5 pp of Pingora's
// figure (the shorter trace warms up for a larger share of it) and above
// LRU.
func TestHitRatioQuick(t *testing.T) {
	t.Parallel()
	names := keyNames(hitItems)
	trace := zipfTrace(t, 1.0, 1_000_000)
	for _, i := range []int{0, 2, 4} { // 0.5 %, 5 %, 25 %
		frac := hitSizes[i]
		size := int(frac*hitItems + 0.5)
		ufo, base := replay(t, trace, names, size)
		want := pingoraTinyUFO[1.0][i]
		t.Logf("size %g%%: TinyUFO %.2f%% LRU %.2f%% Pingora %.2f%%", 100*frac, ufo, base, want)
		if ufo < want-1.5 || ufo > want+1.5 {
			t.Errorf("size %g%%: %.2f%%, Pingora %.2f%%", 100*frac, ufo, want)
		}
		if ufo <= base {
			t.Errorf("size %g%%: TinyUFO %.2f%% not above LRU %.2f%%", 100*frac, ufo, base)
		}
	}
}
