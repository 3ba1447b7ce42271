package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestSplicePipeCap: with maxSplicePipes pipes in use, a body is copied,
// whole, rather than spliced; once pipes are free it is spliced again.
func TestSplicePipeCap(t *testing.T) {
	body := bytes.Repeat([]byte("z"), 200<<10)
	origin := startRawOrigin(t, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	p := startProxy(t, routerFor(t, &Peer{Addr: origin}), Config{}, ListenerConfig{Name: "http"})
	get := func() {
		t.Helper()
		c := dialTCP(t, p.addr)
		c.SetDeadline(time.Now().Add(time.Minute))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(resp.Body); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%d bytes, want %d (%v)", len(got), len(body), err)
		}
	}
	splicePipesInUse.Add(maxSplicePipes)
	before := splicedBodies.Load()
	get()
	splicePipesInUse.Add(-maxSplicePipes)
	if n := splicedBodies.Load() - before; n != 0 {
		t.Fatalf("%d bodies spliced with every pipe in use", n)
	}
	get()
	// The relay counts the body after its last byte reached the client,
	// which may be after get has read it.
	waitFor(t, 10*time.Second, "the body spliced once pipes were free", func() bool { return splicedBodies.Load()-before == 1 })
	// The relay returns its pipe just after the client has the last byte.
	waitFor(t, 10*time.Second, "no pipe counted in use", func() bool { return splicePipesInUse.Load() == 0 })
}
