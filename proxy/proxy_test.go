package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Origin-Proto", r.Proto)
		w.Header().Set("X-Origin-Host", r.Host)
		w.Header().Set("X-Origin-XFF", r.Header.Get("X-Forwarded-For"))
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	})
}

func TestH1ToH1(t *testing.T) {
	origin := startOrigin(t, originH1, nil, echoHandler())
	p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "http"})
	c := h1Client()
	for i := range 3 {
		resp, body := mustGet(t, c, "http://"+p.addr+"/hello?x=1")
		if resp.StatusCode != 200 || body != "GET /hello?x=1 " {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Origin-XFF"); got != "127.0.0.1" {
			t.Fatalf("XFF = %q", got)
		}
	}
	resp, err := c.Post("http://"+p.addr+"/post", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "POST /post payload" {
		t.Fatalf("post: %q", b)
	}
}
