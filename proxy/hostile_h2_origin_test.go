package proxy

import (
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// startRawH2Origin is an h2c origin written with a bare framer, to send
// what a real server would not. answer runs on the connection's only
// goroutine for each request stream, with the framer, the connection
// and the request's fields (so the connection's reads stop
// while it runs); streams counts the request streams it saw.
func startRawH2Origin(t *testing.T, streams *atomic.Int32, answer func(fr *http2.Framer, c net.Conn, id uint32, fields []hpack.HeaderField)) *Peer {
	t.Helper()
	addr := rawPeer(t, func(c net.Conn) {
		defer c.Close()
		fr := acceptH2(c)
		if fr == nil {
			return
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() && fr.WriteSettingsAck() != nil {
					return
				}
			case *http2.PingFrame:
				if !f.IsAck() && fr.WritePing(true, f.Data) != nil {
					return
				}
			case *http2.MetaHeadersFrame:
				if streams != nil {
					streams.Add(1)
				}
				answer(fr, c, f.StreamID, f.Fields)
			}
		}
	})
	return &Peer{Addr: addr, Protocol: H2C}
}

// hpackBlock encodes fields (name, value, name, value, ...).
func hpackBlock(fields ...string) []byte {
	var b bytes.Buffer
	e := hpack.NewEncoder(&b)
	for i := 0; i+1 < len(fields); i += 2 {
		e.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return b.Bytes()
}

// writeBlock sends a header block as HEADERS and CONTINUATION frames of
// at most 16 KiB.
func writeBlock(fr *http2.Framer, id uint32, block []byte, endStream bool) error {
	first := true
	for first || len(block) > 0 {
		n := min(len(block), 16384)
		chunk, last := block[:n], n == len(block)
		block = block[n:]
		var err error
		if first {
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: chunk, EndHeaders: last, EndStream: endStream && last})
		} else {
			err = fr.WriteContinuation(id, last, chunk)
		}
		if err != nil {
			return err
		}
		first = false
	}
	return nil
}

// getWithin sends GET url and fails the test when no answer (or body
// end) arrives within d. It returns the status (0 for a transport error)
// and the body read.
func getWithin(t *testing.T, url string, d time.Duration) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: d, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Get(url)
	if err != nil {
		if strings.Contains(err.Error(), "Client.Timeout") {
			t.Fatalf("GET %s: no answer within %v: %v", url, d, err)
		}
		return 0, ""
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil && strings.Contains(err.Error(), "Client.Timeout") {
		t.Fatalf("GET %s: body did not end within %v", url, d)
	}
	return res.StatusCode, string(b)
}

// TestH2UpstreamThatStopsReading: an HTTP/2 origin sends a response head,
// then PINGs without ever reading the proxy's acknowledgements. The
// transport's reader blocked writing an ACK and held the connection's
// write lock, so neither the read-idle timeout's reset nor anything else
// could end the request: the client waited forever (before the fix this
// test fails at its 20 s deadline). The connection's writes are now
// bounded by the upstream write idle timeout.
func TestH2UpstreamThatStopsReading(t *testing.T) {
	origin := startRawH2Origin(t, nil, func(fr *http2.Framer, c net.Conn, id uint32, _ []hpack.HeaderField) {
		if writeBlock(fr, id, hpackBlock(":status", "200"), false) != nil {
			return
		}
		var batch bytes.Buffer // 4,096 PINGs a write: the buffers fill fast
		bf := http2.NewFramer(&batch, nil)
		for range 4096 {
			bf.WritePing(false, [8]byte{})
		}
		for range 10_000 { // until the proxy gives up on the connection
			if _, err := c.Write(batch.Bytes()); err != nil {
				return
			}
		}
	})
	cfg := Config{Retries: -1}
	cfg.Upstream.ReadIdle = time.Minute // not what ends it
	cfg.Upstream.WriteIdle = 200 * time.Millisecond
	p := startProxy(t, routerFor(t, origin), cfg, ListenerConfig{Name: "http"})
	getWithin(t, "http://"+p.addr+"/", 20*time.Second)
}

// TestH2UpstreamInvalidStatus: an HTTP/2 origin's :status that is not
// three digits got to the client as "HTTP/1.1 0" or "HTTP/1.1 1000"; an
// HTTP/1.1 origin's gets 502, and now so does this one.
func TestH2UpstreamInvalidStatus(t *testing.T) {
	for _, status := range []string{"000", "099", "1000", "+200", "20"} {
		origin := startRawH2Origin(t, nil, func(fr *http2.Framer, c net.Conn, id uint32, _ []hpack.HeaderField) {
			writeBlock(fr, id, hpackBlock(":status", status), true)
		})
		p := startProxy(t, routerFor(t, origin), Config{Retries: -1}, ListenerConfig{Name: "http"})
		if code, _ := getWithin(t, "http://"+p.addr+"/", 10*time.Second); code != 502 {
			t.Errorf(":status %q: client got %d, want 502", status, code)
		}
	}
}

// TestH2UpstreamHeaderListCap: an HTTP/2 origin's response head is held
// to the HTTP/1.1 upstream limit (256 KiB), not the transport's 10 MiB:
// a 1 MiB field reached the client, and cost the proxy its size several
// times over per request in flight.
func TestH2UpstreamHeaderListCap(t *testing.T) {
	origin := startRawH2Origin(t, nil, func(fr *http2.Framer, c net.Conn, id uint32, _ []hpack.HeaderField) {
		writeBlock(fr, id, hpackBlock(":status", "200", "x-big", strings.Repeat("a", 1<<20)), true)
	})
	p := startProxy(t, routerFor(t, origin), Config{Retries: -1}, ListenerConfig{Name: "http"})
	if code, _ := getWithin(t, "http://"+p.addr+"/", 10*time.Second); code != 502 {
		t.Errorf("1 MiB response field: client got %d, want 502", code)
	}
}

// TestH2UpstreamRefusedStreamFailsOver: a peer that answers every stream
// with REFUSED_STREAM (not processed: RFC 9113 8.7, safe to retry
// elsewhere) hands the request to the next peer at once. The transport
// retried a request without a body on the same peer with a backoff of
// 1, 2, 4... s, so the client got 504 at the response header timeout
// (before the fix this test gets 504) and the refusing peer each request
// 4 times or more.
func TestH2UpstreamRefusedStreamFailsOver(t *testing.T) {
	var refused, served atomic.Int32
	refusing := startRawH2Origin(t, &refused, func(fr *http2.Framer, _ net.Conn, id uint32, _ []hpack.HeaderField) {
		fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
	})
	good := startRawH2Origin(t, &served, func(fr *http2.Framer, _ net.Conn, id uint32, _ []hpack.HeaderField) {
		writeBlock(fr, id, hpackBlock(":status", "200", "content-length", "2"), false)
		fr.WriteData(id, true, []byte("ok"))
	})
	cfg := Config{Retries: 1}
	cfg.Upstream.ResponseHeader = 3 * time.Second
	p := startProxy(t, routerFor(t, refusing, good), cfg, ListenerConfig{Name: "http"})
	const n = 4
	for i := range n {
		if code, body := getWithin(t, "http://"+p.addr+"/", 20*time.Second); code != 200 || body != "ok" {
			t.Fatalf("request %d: got %d %q, want 200 from the second peer", i, code, body)
		}
	}
	// Each request met the refusing peer at most once, and the transport's
	// own retry, cut short, at most once more.
	if got := refused.Load(); got > 2*n {
		t.Errorf("refusing peer saw %d streams for %d requests", got, n)
	}
	if got := served.Load(); got != n {
		t.Errorf("good peer served %d, want %d", got, n)
	}
}

// TestH2UpstreamNoTransparentGzip: a request without Accept-Encoding
// reaches an HTTP/2 origin without one, and the origin's coded body
// reaches the client as sent. The transport added "Accept-Encoding: gzip"
// and decoded the answer itself (before the fix the origin saw gzip asked
// for and the client got the decoded body without Content-Encoding).
func TestH2UpstreamNoTransparentGzip(t *testing.T) {
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	z.Write(bytes.Repeat([]byte("A"), 4096))
	z.Close()
	gz := b.Bytes()
	var asked atomic.Value
	origin := startRawH2Origin(t, nil, func(fr *http2.Framer, _ net.Conn, id uint32, fields []hpack.HeaderField) {
		for _, f := range fields {
			if f.Name == "accept-encoding" {
				asked.Store(f.Value)
			}
		}
		writeBlock(fr, id, hpackBlock(":status", "200", "content-encoding", "gzip", "content-length", strconv.Itoa(len(gz))), false)
		fr.WriteData(id, true, gz)
	})
	p := startProxy(t, routerFor(t, origin), Config{Retries: -1}, ListenerConfig{Name: "http"})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	res, err := c.Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if ae, _ := asked.Load().(string); ae != "" {
		t.Errorf("origin got Accept-Encoding %q, the client sent none", ae)
	}
	if res.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(got, gz) {
		t.Errorf("client got Content-Encoding %q and %d bytes, want the origin's gzip body (%d bytes)", res.Header.Get("Content-Encoding"), len(got), len(gz))
	}
}

// acceptH2 reads a client's preface on c and sends the server's empty
// SETTINGS, as a raw HTTP/2 origin starts; it returns the framer (with
// header blocks decoded), or nil when the client went away.
func acceptH2(c net.Conn) *http2.Framer {
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, pre); err != nil {
		return nil
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if fr.WriteSettings() != nil {
		return nil
	}
	return fr
}
