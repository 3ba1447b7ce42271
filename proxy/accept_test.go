package proxy

import (
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingora-go/pingora-go/internal/logtest"
	"github.com/pingora-go/pingora-go/internal/logthrottle"
)

// flakyAcceptListener fails every other Accept with EMFILE: a process at
// its open-file limit while connections churn, each freed descriptor
// taken by the next accept and the one after failing again.
type flakyAcceptListener struct {
	net.Listener
	calls, failed atomic.Int64
}

func (l *flakyAcceptListener) Accept() (net.Conn, error) {
	if l.calls.Add(1)%2 == 1 {
		l.failed.Add(1)
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptOutOfDescriptorsLogThrottled: at the open-file limit under
// churn, every accept that succeeds resets the backoff and the next one
// fails again: a warning per failure was a line per connection. They are
// throttled (logthrottle's burst a minute, then a summary), and every
// connection is still served.
func TestAcceptOutOfDescriptorsLogThrottled(t *testing.T) {
	var logged logtest.Buffer
	cfg := Config{ErrorLog: slog.New(slog.NewTextHandler(&logged, nil)), Metrics: prometheus.NewRegistry()}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyAcceptListener{Listener: ln}
	p := startProxyOn(t, routerFor(t, h1Recorder(t).Peer), cfg, ListenerConfig{Name: "plain"}, fl)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	const conns = 3 * logthrottle.DefaultBurst
	for i := range conns {
		resp, err := client.Get("http://" + p.addr + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
	}
	lines := strings.Count(logged.String(), "accept failed")
	if fl.failed.Load() < conns {
		t.Fatalf("only %d accepts failed", fl.failed.Load())
	}
	// Every failure is counted, for an alert (the log lines are not).
	if got, want := counterValue(p.srv.metrics.acceptFailures.WithLabelValues("plain")), float64(fl.failed.Load()); got < want-1 || got > want {
		t.Errorf("pingora_downstream_accept_failures_total{listener=plain} = %v, want %v", got, want)
	}
	if lines == 0 || lines > logthrottle.DefaultBurst {
		t.Fatalf("%d accept failures logged %d lines, want 1 to %d:\n%s", fl.failed.Load(), lines, logthrottle.DefaultBurst, logged.String())
	}
}
