package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func TestHandlerBodies(t *testing.T) {
	t.Parallel()
	var st stats
	h := newHandler(&st)
	for _, tc := range []struct {
		path string
		code int
		size int
	}{
		{"/small", 200, 100},
		{"/1k", 200, 1 << 10},
		{"/100k", 200, 100 << 10},
		{"/c/small", 200, 100},
		{"/close/1k", 200, 1 << 10},
		{"/nope", 404, -1},
	} {
		t.Run(tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d", rec.Code, tc.code)
			}
			if tc.size < 0 {
				return
			}
			if got := rec.Body.Len(); got != tc.size {
				t.Errorf("body %d bytes, want %d", got, tc.size)
			}
			if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(tc.size) {
				t.Errorf("Content-Length %q, want %d", got, tc.size)
			}
			if got, want := rec.Header().Get("Connection"), map[bool]string{true: "close"}[strings.HasPrefix(tc.path, "/close/")]; got != want {
				t.Errorf("Connection %q, want %q", got, want)
			}
		})
	}
}

func TestStatsCountsBodyRequests(t *testing.T) {
	t.Parallel()
	var st stats
	st.conns.Add(2)
	h := newHandler(&st)
	for _, p := range []string{"/small", "/100k", "/_stats", "/nope"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/_stats", nil))
	body, _ := io.ReadAll(rec.Body)
	if got, want := strings.TrimSpace(string(body)), "conns 2\nrequests 2"; got != want {
		t.Fatalf("/_stats = %q, want %q", got, want)
	}
}
