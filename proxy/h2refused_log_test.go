package proxy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pingora-go/pingora-go/internal/logtest"
)

// TestH2RefusedHeadLogged: an HTTP/2 request answered 431 for a head over
// the limits (too large, too many fields) has its access log line, with
// its method, path, status and the reason, as a refused HTTP/1.1 head
// has, and is counted in pingora_downstream_rejected_total by reason.
// Before it, OnReject counted it but the access log had no line.
func TestH2RefusedHeadLogged(t *testing.T) {
	var logged logtest.Buffer
	cfg := Config{AccessLog: slog.New(slog.NewJSONHandler(&logged, nil))}
	cfg.Downstream.MaxHeaderBytes = 8 << 10
	p := startProxy(t, routerFor(t, h1Recorder(t).Peer), cfg, ListenerConfig{Name: "plain", H2C: true})
	nc := dialTCP(t, p.addr)
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	nc.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(nc, nc)
	fr.WriteSettings()
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	head := func(path string, extra func()) []byte {
		blk.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", path}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		extra()
		return append([]byte(nil), blk.Bytes()...)
	}
	large := head("/large", func() {
		enc.WriteField(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("b", 12<<10), Sensitive: true})
	})
	many := head("/many", func() {
		for range 200 {
			enc.WriteField(hpack.HeaderField{Name: "x-f", Value: "1"})
		}
	})
	for i, b := range [][]byte{large, many} {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	dec := hpack.NewDecoder(4096, nil)
	got := map[uint32]string{}
	for len(got) < 2 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("answers %v: %v", got, err)
		}
		if h, ok := f.(*http2.HeadersFrame); ok {
			fields, _ := dec.DecodeFull(h.HeaderBlockFragment())
			got[h.StreamID] = fields[0].Value
		}
	}
	if got[1] != "431" || got[3] != "431" {
		t.Fatalf("statuses %v, want 431 for both", got)
	}
	want := map[string]string{"/large": "header_too_large", "/many": "too_many_fields"}
	waitFor(t, 5*time.Second, "both access log lines", func() bool { return strings.Count(logged.String(), "\n") >= 2 })
	for _, line := range strings.Split(strings.TrimSpace(logged.String()), "\n") {
		var rec struct {
			Method, Path, Listener, Error string
			Status                        int
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		reason, ok := want[rec.Path]
		if !ok || rec.Method != "GET" || rec.Status != 431 || rec.Listener != "plain" || !strings.Contains(rec.Error, reason) {
			t.Errorf("access log line %s, want GET %s 431 with %s", line, rec.Path, reason)
		}
		delete(want, rec.Path)
	}
	if c := labelCounts(p.srv.metrics.rejected); c["header_too_large"] != 1 || c["too_many_fields"] != 1 {
		t.Errorf("pingora_downstream_rejected_total %v, want header_too_large 1, too_many_fields 1", c)
	}
}
