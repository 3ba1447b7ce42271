package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// TestBig: a big body has the asked length, its digest in X-Sha256, is
// cacheable, differs per name, and bad sizes fall back to the default.
func TestBig(t *testing.T) {
	t.Parallel()
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		handler("o1").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	rec := get("/big/a?size=200000&ms=0")
	sum := sha256.Sum256(rec.Body.Bytes())
	if rec.Code != 200 || rec.Body.Len() != 200000 || rec.Header().Get("Content-Length") != "200000" ||
		rec.Header().Get("X-Sha256") != hex.EncodeToString(sum[:]) || rec.Header().Get("Cache-Control") != "max-age=300" {
		t.Fatalf("big: %d, %d bytes, headers %v", rec.Code, rec.Body.Len(), rec.Header())
	}
	if other := get("/big/b?size=200000&ms=0"); bytes.Equal(other.Body.Bytes(), rec.Body.Bytes()) {
		t.Fatal("two names gave the same body")
	}
	for _, size := range []string{"-1", "0", "x", strconv.Itoa(64<<20 + 1)} {
		if got := get("/big/c?ms=0&size=" + size); got.Body.Len() != 4<<20 {
			t.Fatalf("size=%s: %d bytes, want the default 4 MiB", size, got.Body.Len())
		}
	}
}
