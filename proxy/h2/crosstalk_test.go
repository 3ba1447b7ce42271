package h2

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
)

// idBody is request id's body of n bytes: its id, repeated, so that a
// byte from another stream's body shows wherever it lands.
func idBody(id, n int) []byte {
	unit := []byte(fmt.Sprintf("<%d>", id))
	return bytes.Repeat(unit, n/len(unit)+1)[:n]
}

// echoByID answers with the request's X-Id in a field and in its trailer,
// and its body, written in pieces with flushes between them, so that the
// streams' frames interleave on the connection.
func echoByID(st *Stream) {
	id := st.Header.Get("X-Id")
	body, err := io.ReadAll(st)
	if err != nil {
		st.Reset()
		return
	}
	h := http.Header{"X-Id": {id}, "X-Len": {strconv.Itoa(len(body))}, "Trailer": {"X-Trailer-Id"}}
	if st.WriteHead(200, h) != nil {
		return
	}
	for len(body) > 0 {
		n := min(len(body), 3000)
		if st.Write(body[:n]) != nil {
			return
		}
		st.Flush()
		body = body[n:]
	}
	st.Finish(http.Header{"X-Trailer-Id": {id}})
}

// TestStreamsNoCrossTalk: many streams at once on few connections, their
// handlers run by reused workers, some reset by the client mid-response:
// every response that completes carries its own request's id in its head,
// its body and its trailers. Run with -race, it also checks that a
// stream's buffers are touched by one goroutine at a time.
func TestStreamsNoCrossTalk(t *testing.T) {
	s := serve(t, Config{MaxConcurrentStreams: 32}, echoByID)
	c := client()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := (i * 7919) % 70000
			want := idBody(i, n)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+s.addr+"/", bytes.NewReader(want))
			req.Header.Set("X-Id", strconv.Itoa(i))
			resp, err := c.Do(req)
			if err != nil {
				errs <- fmt.Errorf("request %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			if got := resp.Header.Get("X-Id"); got != strconv.Itoa(i) {
				errs <- fmt.Errorf("request %d got the head of %q", i, got)
				return
			}
			if i%5 == 0 && n > 4000 {
				// Reset the stream mid-response: its late frames must not
				// reach any other stream.
				io.ReadFull(resp.Body, make([]byte, 1000))
				cancel()
				return
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				errs <- fmt.Errorf("request %d body: %v", i, err)
				return
			}
			if !bytes.Equal(got, want) {
				errs <- fmt.Errorf("request %d got %d bytes, not its own %d (starts %q)", i, len(got), n, got[:min(len(got), 16)])
				return
			}
			if tr := resp.Trailer.Get("X-Trailer-Id"); tr != strconv.Itoa(i) {
				errs <- fmt.Errorf("request %d got the trailer of %q", i, tr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
