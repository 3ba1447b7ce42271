package proxy

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// patternReader yields n bytes without allocating.
type patternReader struct{ n int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	for i := range p {
		p[i] = byte(i)
	}
	r.n -= int64(len(p))
	return len(p), nil
}

// heapPeak samples the live heap until stop is closed and reports the peak.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// TestLargeBodyBoundedMemory streams a large body up and another down
// through the proxy (1 GiB each; 64 MiB under the race detector) and checks
// the heap grows by less than 64 MiB: bodies are streamed, never buffered.
func TestLargeBodyBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("large transfer")
	}
	size := int64(1 << 30)
	if raceEnabled {
		size = 64 << 20
	}
	var received atomic.Int64
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n, _ := io.Copy(io.Discard, r.Body)
			received.Store(n)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		io.Copy(w, &patternReader{n: size})
	}))
	for _, mode := range []string{"h1", "h2c"} {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http", H2C: true})
			c := h1Client()
			if mode == "h2c" {
				c = h2cClient()
			}
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)
			stop := make(chan struct{})
			peak := heapPeak(stop)
			start := time.Now()
			req, _ := http.NewRequest("POST", "http://"+p.addr+"/up", &patternReader{n: size})
			req.ContentLength = -1 // chunked upload
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			up := time.Since(start)
			resp, err = c.Get("http://" + p.addr + "/down")
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			close(stop)
			growth := int64(<-peak) - int64(base.HeapAlloc)
			if err != nil || got != size || received.Load() != size {
				t.Fatalf("down %d (%v), up %d, want %d", got, err, received.Load(), size)
			}
			t.Logf("%s: %d MiB up in %v, down in %v; heap growth %.1f MiB", mode, size>>20, up, time.Since(start)-up, float64(growth)/(1<<20))
			if growth > 64<<20 {
				t.Fatalf("heap grew by %s while streaming", fmt.Sprint(growth>>20, " MiB"))
			}
		})
	}
}

// TestStreamedChunkFlushed: a chunk the upstream flushed reaches the
// client while the upstream waits, for every upstream protocol.
func TestStreamedChunkFlushed(t *testing.T) {
	ca := newTestCA(t)
	for _, mode := range []originMode{originH1, originH2C} {
		release := make(chan struct{})
		origin := startOrigin(t, mode, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			<-release
			io.WriteString(w, "last\n")
		}))
		p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http", H2C: true})
		for name, c := range map[string]*http.Client{"h1": h1Client(), "h2c": h2cClient()} {
			resp, err := c.Get("http://" + p.addr + "/")
			if err != nil {
				t.Fatalf("%v/%s: %v", origin.Protocol, name, err)
			}
			first := make([]byte, 6)
			if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first\n" {
				t.Fatalf("%v/%s: %q %v", origin.Protocol, name, first, err)
			}
			resp.Body.Close()
		}
		close(release)
	}
}
