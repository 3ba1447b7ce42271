package h2

import (
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestClientGoAwayThenStream: a stream the client opens after its own
// GOAWAY is answered. GOAWAY's last stream id names the streams its
// receiver (here the server) initiated, and only the receiver may open no
// more (RFC 9113 section 6.8); nginx answers them too. The server drains
// (its own GOAWAY, then the last stream fixed) and the connection ends by
// itself. Before, the connection's write side closed at the GOAWAY when
// no stream was open (the new stream got nothing), and a stream opened
// while another ran was refused.
func TestClientGoAwayThenStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		ids  []uint32 // streams opened, the GOAWAY sent after the first
		lead bool     // the GOAWAY comes before any stream
	}{
		{"GOAWAY first", []uint32{1}, true},
		{"GOAWAY between streams", []uint32{1, 3}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, Config{DrainWait: 50 * time.Millisecond}, func(st *Stream) {
				st.WriteHead(200, http.Header{})
				st.Write([]byte("ok"))
				st.Finish(nil)
			})
			fr, _ := rawConn(t, s.addr)
			hb := headerBlock(":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/")
			if tc.lead {
				fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			}
			for i, id := range tc.ids {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb, EndStream: true, EndHeaders: true})
				if i == 0 && !tc.lead {
					fr.WriteGoAway(0, http2.ErrCodeNo, nil)
				}
			}
			status := map[uint32]string{}
			var last uint32
			sawFinal := false
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					break // the connection ended
				}
				switch f := f.(type) {
				case *http2.MetaHeadersFrame:
					status[f.StreamID] = f.PseudoValue("status")
				case *http2.RSTStreamFrame:
					status[f.StreamID] = "reset " + f.ErrCode.String()
				case *http2.GoAwayFrame:
					last, sawFinal = f.LastStreamID, f.LastStreamID != 1<<31-1
				}
			}
			for _, id := range tc.ids {
				if status[id] != "200" {
					t.Errorf("stream %d: %q, want answered 200 (all: %v)", id, status[id], status)
				}
			}
			if want := tc.ids[len(tc.ids)-1]; !sawFinal || last != want {
				t.Errorf("final GOAWAY seen %v, last stream %d, want %d", sawFinal, last, want)
			}
		})
	}
}
