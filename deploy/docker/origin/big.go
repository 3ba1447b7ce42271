package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"
)

// chunk is the write size of a big body.
const chunk = 64 << 10

// Body returns the big body of name: size bytes of a pattern that differs
// per name and per offset, so that a body spliced from two objects or
// shifted by a chunk does not pass the digest.
func Body(name string, size int) []byte {
	b := make([]byte, size)
	seed := sha256.Sum256([]byte(name))
	for off := 0; off < size; off += 32 {
		h := sha256.Sum256(append(seed[:], byte(off>>24), byte(off>>16), byte(off>>8), byte(off)))
		copy(b[off:], h[:])
	}
	return b
}

func big(w http.ResponseWriter, r *http.Request) {
	size, ms := 4<<20, 3000
	if v, err := strconv.Atoi(r.URL.Query().Get("size")); err == nil && v > 0 && v <= 64<<20 {
		size = v
	}
	if v, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil && v >= 0 && v <= 60000 {
		ms = v
	}
	body := Body(r.URL.Path, size)
	sum := sha256.Sum256(body)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(size))
	h.Set("Cache-Control", "max-age=300")
	h.Set("X-Sha256", hex.EncodeToString(sum[:]))
	w.WriteHeader(http.StatusOK)
	chunks := (size + chunk - 1) / chunk
	pause := time.Duration(ms) * time.Millisecond / time.Duration(max(chunks, 1))
	rc := http.NewResponseController(w)
	for off := 0; off < size; off += chunk {
		if _, err := w.Write(body[off:min(off+chunk, size)]); err != nil {
			return
		}
		rc.Flush()
		select {
		case <-time.After(pause):
		case <-r.Context().Done():
			return
		}
	}
}
