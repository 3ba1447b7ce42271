package proxy

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/pingora-go/pingora-go/internal/logtest"
)

// TestH2FloodCountedAndLogged: a PING flood on an h2c listener ends the
// connection with GOAWAY ENHANCE_YOUR_CALM, is counted in
// pingora_downstream_floods_total{reason="overhead_frames"} and logged
// once.
func TestH2FloodCountedAndLogged(t *testing.T) {
	var logged logtest.Buffer
	cfg := Config{ErrorLog: slog.New(slog.NewTextHandler(&logged, nil))}
	p := startProxy(t, routerFor(t, h1Recorder(t).Peer), cfg, ListenerConfig{Name: "plain", H2C: true})
	nc := dialTCP(t, p.addr)
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	nc.Write([]byte(http2.ClientPreface))
	go func() {
		w := http2.NewFramer(nc, nil)
		for range 20_000 {
			if w.WritePing(false, [8]byte{1}) != nil {
				return
			}
		}
	}()
	fr := http2.NewFramer(nil, nc)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
			}
			break
		}
	}
	waitFor(t, 5*time.Second, "the log line", func() bool {
		s := logged.String()
		return strings.Contains(s, `msg="connection closed for flooding"`) && strings.Contains(s, "reason=overhead_frames")
	})
	if got := floodCounts(p); got["overhead_frames"] != 1 || got["header_block"] != 0 {
		t.Fatalf("pingora_downstream_floods_total %v, want overhead_frames 1, header_block 0", got)
	}
	if n := strings.Count(logged.String(), "connection closed for flooding"); n != 1 {
		t.Fatalf("%d log lines, want 1", n)
	}
}

// floodCounts returns pingora_downstream_floods_total by reason.
func floodCounts(p *testProxy[struct{}]) map[string]float64 {
	return labelCounts(p.srv.metrics.floods)
}
