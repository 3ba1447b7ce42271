package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// bigKeys are the large objects fetched cold while their owners may be
// killed: with 12 keys on 3 nodes, the victim owns none with
// probability (2/3)^12, under 1 %.
const bigKeys, bigSize, bigStreamMs = 12, 4 << 20, 4000

var bigClient = &http.Client{Timeout: 30 * time.Second}

// fetch is one large response as the client saw it.
type fetch struct {
	Node   string `json:"node"`
	Key    string `json:"key"`
	Status int    `json:"status"`
	Bytes  int    `json:"bytes"`
	// Complete: the client read the whole body without error; Verified:
	// it has the promised length and its digest is the origin's.
	Complete, Verified bool
	Err                string `json:"err,omitempty"`
}

func bigPath(k int) string {
	return fmt.Sprintf("/big/k%d?size=%d&ms=%d", k, bigSize, bigStreamMs)
}

func getBig(n Node, path string) fetch {
	f := fetch{Node: n.Name, Key: path}
	resp, err := bigClient.Get("http://" + n.Proxy + path)
	if err != nil {
		f.Err = err.Error()
		return f
	}
	defer resp.Body.Close()
	f.Status = resp.StatusCode
	h := sha256.New()
	nb, err := io.Copy(h, resp.Body)
	f.Bytes = int(nb)
	if err != nil {
		f.Err = err.Error()
		return f
	}
	f.Complete = true
	f.Verified = resp.StatusCode == 200 && nb == bigSize && hex.EncodeToString(h.Sum(nil)) == resp.Header.Get("X-Sha256")
	return f
}

// killOwnerMidStream fetches every big key cold through the two nodes that
// are not the victim, and kills the victim 1.5 s into the 4 s streams:
// the keys it owns were streaming from it.
func (r *Run) killOwnerMidStream() error {
	nodes := r.Running()
	victim := nodes[1]
	clients := []Node{nodes[0], nodes[2]}
	r.setVictim(victim)
	var mu sync.Mutex
	var fetches []fetch
	var wg sync.WaitGroup
	for k := 0; k < bigKeys; k++ {
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f := getBig(c, bigPath(k))
				mu.Lock()
				fetches = append(fetches, f)
				mu.Unlock()
			}()
		}
	}
	r.Event("%d cold fetches of %d MiB objects streamed over %d ms, through %s and %s", 2*bigKeys, bigSize>>20, bigStreamMs, clients[0].Name, clients[1].Name)
	r.Sleep(1500 * time.Millisecond)
	r.Fault(victim.Name, "killed")
	if _, err := Docker(r.ctx, 30*time.Second, "kill", "-s", "KILL", victim.Container); err != nil {
		return err
	}
	r.Event("docker kill -s KILL %s (%s) during the streams", victim.Container, victim.Name)
	wg.Wait()
	r.Figure("fetches_during_kill", fetches)
	return nil
}

func (r *Run) checkCacheAndLimit() {
	during, _ := r.figures["fetches_during_kill"].([]fetch)
	var ok, broken, truncated int
	var bad []string
	for _, f := range during {
		switch {
		case f.Verified:
			ok++
		case !f.Complete:
			broken++
		default:
			truncated++
			bad = append(bad, fmt.Sprintf("%s %s: HTTP %d, %d bytes", f.Node, f.Key, f.Status, f.Bytes))
		}
	}
	r.Check("no truncated cached object served during the owner kill (each body complete and verified, or broken)",
		truncated == 0 && len(during) > 0, "%d fetches: %d complete and verified, %d broken (reset or closed: the kill cut them), %d complete-looking but wrong%s",
		len(during), ok, broken, truncated, exampleList(bad))
	// After the heal every node serves every object whole.
	var after []fetch
	for _, n := range r.Running() {
		for k := 0; k < bigKeys; k++ {
			after = append(after, getBig(n, bigPath(k)))
		}
	}
	bad, good := nil, 0
	for _, f := range after {
		if f.Verified {
			good++
		} else if len(bad) < 3 {
			bad = append(bad, fmt.Sprintf("%s %s: HTTP %d, %d bytes, %s", f.Node, f.Key, f.Status, f.Bytes, f.Err))
		}
	}
	r.Figure("fetches_after_heal", after)
	r.Check("after the heal every node serves every object whole", good == len(after) && good > 0,
		"%d of %d fetches complete and verified%s", good, len(after), exampleList(bad))
	r.checkLimit()
}

// checkLimit counts the admitted requests (200) of the limited load per
// second of the wall clock (the owner's windows are aligned to it) and
// checks the highest against the bound of ratelimit/doc.go with a crash
// (one sync round's grants lost, 2·L·T/P): L + N·2⌈L·T/(N·P)⌉ + L·T/(5P)
// + 2·L·T/P.
func (r *Run) checkLimit() {
	var lim *load
	for _, l := range r.loads {
		if l.kind == "limited" {
			lim = l
		}
	}
	if lim == nil {
		return
	}
	n := float64(r.sc.Nodes)
	bound := limitL + n*2*math.Ceil(limitL*limitT/(n*limitP)) + limitL*limitT/(5*limitP) + 2*limitL*limitT/limitP
	perSec := map[int64]int{}
	startUnix := float64(r.start.UnixNano()) / 1e9
	var first, last int64 = math.MaxInt64, 0
	for _, res := range lim.all() {
		s := int64(math.Floor(startUnix + res.T))
		first, last = min(first, s), max(last, s)
		if res.Status == 200 {
			perSec[s]++
		}
	}
	var secs []int
	worst, worstAt := 0, int64(0)
	for s := first + 1; s < last; s++ { // whole seconds only
		secs = append(secs, perSec[s])
		if perSec[s] > worst {
			worst, worstAt = perSec[s], s
		}
	}
	sorted := append([]int(nil), secs...)
	sort.Ints(sorted)
	median := 0
	if len(sorted) > 0 {
		median = sorted[len(sorted)/2]
	}
	r.Figure("limited_admitted_per_second", secs)
	var list []string
	for _, v := range secs {
		list = append(list, fmt.Sprint(v))
	}
	r.Check(fmt.Sprintf("global limit over-admission within the bound (%d/s offered on one key, limit %d/s: at most %.0f per second)", 2*limitL, limitL, bound),
		worst <= int(bound) && len(secs) > 0, "worst second %d (at %.0f s), median %d; every second: %s",
		worst, float64(worstAt)-startUnix, median, strings.Join(list, " "))
}
