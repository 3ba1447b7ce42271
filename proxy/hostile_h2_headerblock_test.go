package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// floodBlock is one hostile response header block: head is the first
// HEADERS frame's fragment (sent without END_HEADERS), next the fragment
// of each CONTINUATION frame after it, sent without end, n its index.
type floodBlock struct {
	name string
	head []byte
	next func(n int) []byte
}

// hpackBombHead is a response head that puts one 4,000-byte field in the
// dynamic table; each one-byte reference to it (index 62) decodes to it
// again.
func hpackBombHead() []byte {
	var b bytes.Buffer
	e := hpack.NewEncoder(&b)
	e.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	e.WriteField(hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 4000)})
	return b.Bytes()
}

var floodBlocks = []floodBlock{
	// Empty CONTINUATION frames decode to nothing and use none of the
	// header list allowance: the transport's framer read them for ever.
	{"empty CONTINUATION frames", hpackBlock(":status", "200"), func(int) []byte { return nil }},
	// Dynamic table size updates (to 0, allowed while the table is empty)
	// decode to nothing either.
	{"CONTINUATION frames of table size updates", hpackBlock(":status", "200"), func(int) []byte { return bytes.Repeat([]byte{0x20}, 1024) }},
	// Fields that the list size counts: the framer stops at 256 KiB.
	{"CONTINUATION frames of fields", hpackBlock(":status", "200"), func(n int) []byte {
		return hpackBlock("x-f"+strconv.Itoa(n), strings.Repeat("v", 1000))
	}},
	// A block that decodes to a huge list of small fields.
	{"many small fields", hpackBlock(":status", "200"), func(n int) []byte {
		return bytes.Repeat(hpackBlock("x", "1"), 512)
	}},
	// An HPACK bomb: each byte of each frame decodes to 4 KB.
	{"HPACK bomb", hpackBombHead(), func(int) []byte { return bytes.Repeat([]byte{0x80 | 62}, 1024) }},
}

// startFloodOrigin answers every request with blk's HEADERS frame and
// then CONTINUATION frames without end, 256 frames a write, until a write
// fails (the proxy closed the connection) or 10 s pass; closed gets one
// value when it stopped, the bytes it wrote.
func startFloodOrigin(t *testing.T, blk floodBlock, closed chan<- int64) *Peer {
	return startRawH2Origin(t, nil, func(fr *http2.Framer, c net.Conn, id uint32, _ []hpack.HeaderField) {
		var sent int64
		defer func() { closed <- sent }()
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk.head}) != nil {
			return
		}
		var batch bytes.Buffer
		bf := http2.NewFramer(&batch, nil)
		for n := 0; ; {
			batch.Reset()
			for range 256 {
				bf.WriteContinuation(id, false, blk.next(n))
				n++
			}
			k, err := c.Write(batch.Bytes())
			sent += int64(k)
			if err != nil {
				return
			}
		}
	})
}

// TestH2UpstreamHeaderBlockFlood: an HTTP/2 origin answers with a HEADERS
// frame and CONTINUATION frames without end. The request fails with 502
// at once (the response header timeout, a minute here, is not what ends
// it), the proxy closes the upstream connection after a bounded number
// of bytes, and a request to another origin goes through meanwhile.
// Before the fix, empty CONTINUATION frames and ones holding only table
// size updates were read for ever: the request got 504 at the response
// header timeout, and the connection's reader spun until the health
// check's PING timed out (45 s), with the origin's bytes.
func TestH2UpstreamHeaderBlockFlood(t *testing.T) {
	good := startOrigin(t, originH2C, nil, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "fine")
	}))
	for _, blk := range floodBlocks {
		t.Run(blk.name, func(t *testing.T) {
			closed := make(chan int64, 4)
			bad := startFloodOrigin(t, blk, closed)
			r := newTestRouter(t)
			tbl, err := r.Build([]UpstreamConfig{{Name: "bad", Peers: []*Peer{bad}}, {Name: "good", Peers: []*Peer{good}}},
				[]RouteConfig{{Host: "bad.test", Upstream: "bad"}, {Host: "*", Upstream: "good"}}, "test")
			if err != nil {
				t.Fatal(err)
			}
			r.Swap(tbl)
			cfg := Config{Retries: -1}
			cfg.Upstream.ResponseHeader = time.Minute
			p := startProxy(t, RouterApp{Router: r}, cfg, ListenerConfig{Name: "http"})
			req, _ := http.NewRequest("GET", "http://"+p.addr+"/", nil)
			req.Host = "bad.test"
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			status := doAsync(c, req)
			if code, body := getWithin(t, "http://"+p.addr+"/", 10*time.Second); code != 200 || body != "fine" {
				t.Errorf("request to the other origin during the flood: %d %q", code, body)
			}
			select {
			case res := <-status:
				if res.status != 502 {
					t.Errorf("client got %d (%v), want 502", res.status, res.err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("no answer within 15 s: the flood holds the request")
			}
			select {
			case sent := <-closed:
				t.Logf("origin sent %d bytes before the proxy closed the connection", sent)
				// What the proxy read, plus up to the two sockets'
				// buffers (a few MiB on loopback).
				if sent > 64<<20 {
					t.Errorf("the origin got %d bytes of one header block out", sent)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the proxy did not close the flooding connection")
			}
		})
	}
}

// TestH2FrameGuard: the guard follows frame boundaries however the reads
// cut them. A legitimate head of 200 KiB of fields in 16 KiB frames, and
// frames of every other type, pass; a block of empty CONTINUATION frames
// fails the read once it passes maxUpstreamBlockWire, and every read
// after it.
func TestH2FrameGuard(t *testing.T) {
	var stream bytes.Buffer
	fr := http2.NewFramer(&stream, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384})
	writeBlock(fr, 1, hpackBlock(":status", "200", "x-big", strings.Repeat("a", 200<<10)), false)
	fr.WriteData(1, false, bytes.Repeat([]byte("d"), 16384))
	writeBlock(fr, 1, hpackBlock("x-trailer", "1"), true)
	legit := stream.Len()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hpackBlock(":status", "200")})
	for range maxUpstreamBlockWire / frameHeaderLen {
		fr.WriteContinuation(3, false, nil)
	}
	for _, chunk := range []int{1, 7, 9, 4096, 1 << 20} {
		g := guardH2(&bytesConn{r: bytes.NewReader(stream.Bytes())})
		var read int
		var err error
		buf := make([]byte, chunk)
		for err == nil {
			var n int
			n, err = g.Read(buf)
			read += n
		}
		if !errors.Is(err, errHeaderBlockFlood) {
			t.Errorf("reads of %d: ended with %v after %d bytes, want the flood error", chunk, err, read)
		}
		if read < legit || read > legit+maxUpstreamBlockWire+frameHeaderLen {
			t.Errorf("reads of %d: %d bytes passed, want the legitimate %d and at most the block allowance after", chunk, read, legit)
		}
		if _, err := g.Read(buf); !errors.Is(err, errHeaderBlockFlood) {
			t.Errorf("reads of %d: the read after the flood got %v", chunk, err)
		}
	}
}

// bytesConn is a net.Conn that reads from r.
type bytesConn struct {
	net.Conn
	r io.Reader
}

func (c *bytesConn) Read(p []byte) (int, error) { return c.r.Read(p) }
