package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// goAwayEvent is a connection-level frame a raw client saw.
type goAwayEvent struct {
	kind string // "goaway" or "ping"
	last uint32
	code http2.ErrCode
}

// rawH2Run drives one raw HTTP/2 connection: it keeps up to 8 GET streams
// in flight until it reads the first GOAWAY, answers SETTINGS and PING,
// calls shutdown once 50 responses completed, and reads until the server
// closes the connection.
type rawH2Run struct {
	sent      []uint32 // stream ids, in order
	status    map[uint32]string
	ended     map[uint32]bool
	reset     map[uint32]http2.ErrCode
	events    []goAwayEvent
	completed int
	end       error // what ended the reader: the server's close, or a bad frame
}

func runRawH2(t *testing.T, nc net.Conn, scheme string, shutdown func()) *rawH2Run {
	t.Helper()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	defer nc.Close()
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)

	run := &rawH2Run{status: map[uint32]string{}, ended: map[uint32]bool{}, reset: map[uint32]http2.ErrCode{}}
	var mu sync.Mutex // guards run
	ctrl := make(chan func() error, 16)
	sem := make(chan struct{}, 8)
	var stop atomic.Bool // set when the first GOAWAY was read
	readerDone := make(chan struct{})
	writerDone := make(chan struct{})

	go func() { // the writer: every frame the client sends
		defer close(writerDone)
		err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 24})
		if err == nil {
			err = fr.WriteWindowUpdate(0, 1<<30)
		}
		next := uint32(1)
		for err == nil {
			slot := sem
			if stop.Load() {
				slot = nil
			}
			select {
			case f := <-ctrl:
				err = f()
			case slot <- struct{}{}:
				if stop.Load() {
					continue
				}
				hbuf.Reset()
				for _, h := range [][2]string{{":method", "GET"}, {":scheme", scheme}, {":path", "/"}, {":authority", "proxy.test"}} {
					enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
				}
				mu.Lock()
				run.sent = append(run.sent, next)
				mu.Unlock()
				err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: next, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
				next += 2
			case <-readerDone:
				return
			}
		}
	}()

	var shutOnce sync.Once
	func() { // the reader
		defer close(readerDone)
		done := func(id uint32) {
			run.ended[id] = true
			run.completed++
			<-sem
			if run.completed >= 50 {
				shutOnce.Do(func() { go shutdown() })
			}
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				mu.Lock()
				run.end = err
				mu.Unlock()
				return // the server closed the connection (or the deadline passed)
			}
			mu.Lock()
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					ctrl <- fr.WriteSettingsAck
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					run.events = append(run.events, goAwayEvent{kind: "ping"})
					data := f.Data
					stop.Store(true)
					ctrl <- func() error { return fr.WritePing(true, data) }
				}
			case *http2.GoAwayFrame:
				stop.Store(true)
				run.events = append(run.events, goAwayEvent{kind: "goaway", last: f.LastStreamID, code: f.ErrCode})
			case *http2.MetaHeadersFrame:
				run.status[f.StreamID] = f.PseudoValue("status")
				if f.StreamEnded() {
					done(f.StreamID)
				}
			case *http2.DataFrame:
				if f.StreamEnded() {
					done(f.StreamID)
				}
			case *http2.RSTStreamFrame:
				run.reset[f.StreamID] = f.ErrCode
				run.completed++
				<-sem
			}
			mu.Unlock()
		}
	}()
	<-writerDone
	return run
}

// check asserts the two-phase GOAWAY: GOAWAY(2^31-1), PING, then the final
// GOAWAY naming every stream sent, each of which got a whole response.
func (r *rawH2Run) check(t *testing.T) {
	t.Helper()
	t.Logf("%d streams sent; connection frames: %+v; the read ended with %v", len(r.sent), r.events, r.end)
	if len(r.sent) < 50 {
		t.Fatalf("only %d streams sent", len(r.sent))
	}
	if len(r.events) < 3 ||
		r.events[0] != (goAwayEvent{kind: "goaway", last: 1<<31 - 1, code: http2.ErrCodeNo}) ||
		r.events[1].kind != "ping" ||
		r.events[2].kind != "goaway" || r.events[2].code != http2.ErrCodeNo {
		t.Fatalf("want GOAWAY(2^31-1), PING, GOAWAY(last); got %+v", r.events)
	}
	last := r.events[2].last
	for _, id := range r.sent {
		if id > last {
			t.Errorf("stream %d sent before the first GOAWAY is above the final last_stream_id %d", id, last)
		}
		if code, ok := r.reset[id]; ok {
			t.Errorf("stream %d reset: %v", id, code)
		} else if r.status[id] != "200" || !r.ended[id] {
			t.Errorf("stream %d: status %q, complete %v", id, r.status[id], r.ended[id])
		}
	}
}

func goAwayTestProxy(t *testing.T, lc ListenerConfig) *testProxy[struct{}] {
	origin := startOrigin(t, originH1, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	cfg := Config{}
	cfg.Downstream.DrainLinger = time.Second // the bound on the PING round trip
	return startProxy(t, routerFor(t, origin), cfg, lc)
}

func shutdownFunc(t *testing.T, srv interface{ Shutdown(context.Context) error }) (func(), chan error) {
	errc := make(chan error, 1)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errc <- srv.Shutdown(ctx)
	}, errc
}

// TestH2TwoPhaseGoAwayH2C: a raw h2c client sending streams continuously
// through Shutdown sees GOAWAY(2^31-1) and a PING, then the final GOAWAY,
// and every stream it sent got a complete response.
func TestH2TwoPhaseGoAwayH2C(t *testing.T) {
	p := goAwayTestProxy(t, ListenerConfig{Name: "h2c", H2C: true})
	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	shut, errc := shutdownFunc(t, p.srv)
	run := runRawH2(t, nc, "http", shut)
	run.check(t)
	if err := <-errc; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestH2TwoPhaseGoAwayTLS is TestH2TwoPhaseGoAwayH2C over TLS with ALPN h2.
func TestH2TwoPhaseGoAwayTLS(t *testing.T) {
	ca := newTestCA(t)
	certs, err := NewCertStoreFromCerts([]tls.Certificate{ca.issue(t, "proxy.test")})
	if err != nil {
		t.Fatal(err)
	}
	p := goAwayTestProxy(t, ListenerConfig{Name: "tls", TLS: certs})
	nc, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: ca.pool, ServerName: "proxy.test", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if proto := nc.ConnectionState().NegotiatedProtocol; proto != "h2" {
		t.Fatalf("ALPN chose %q", proto)
	}
	shut, errc := shutdownFunc(t, p.srv)
	run := runRawH2(t, nc, "https", shut)
	run.check(t)
	if err := <-errc; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
