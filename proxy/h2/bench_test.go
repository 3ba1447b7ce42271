package h2

import (
	"io"
	"net/http"
	"testing"
)

// The reader goroutine's per-frame path: small requests (a HEADERS frame
// each, and the client's WINDOW_UPDATEs) and a request body in small DATA
// frames. The client's own cost is included.

// BenchmarkSmallRequests measures one GET with a 100-byte answer, many
// streams in parallel on one connection.
func BenchmarkSmallRequests(b *testing.B) {
	body := make([]byte, 100)
	s := serve(b, Config{}, func(st *Stream) {
		st.WriteHead(200, http.Header{"Content-Length": {"100"}})
		st.Write(body)
		st.Finish(nil)
	})
	c := client()
	url := "http://" + s.addr + "/small"
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// chunkReader yields n chunks of one size, one per Read: the client sends
// each as a DATA frame of its own.
type chunkReader struct {
	chunk []byte
	n     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	r.n--
	return copy(p, r.chunk), nil
}

// BenchmarkUploadSmallFrames measures a request body sent as 1 KiB DATA
// frames: per frame, as the server reads and returns window for it.
func BenchmarkUploadSmallFrames(b *testing.B) {
	s := serve(b, Config{}, func(st *Stream) {
		io.Copy(io.Discard, st)
		st.WriteHead(204, nil)
		st.Finish(nil)
	})
	c := client()
	b.ReportAllocs()
	b.SetBytes(1024)
	b.ResetTimer()
	resp, err := c.Post("http://"+s.addr+"/up", "application/octet-stream", &chunkReader{chunk: make([]byte, 1024), n: b.N})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}
