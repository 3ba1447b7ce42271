package cache

import (
	"math/rand/v2"
	"net/http"
	"testing"
	"time"
)

// TestParseTimeAgreesWithNetHTTP: the IMF-fixdate fast path accepts and
// rejects what http.ParseTime does, at the same instant, over valid dates
// across the calendar, every single-byte change of them, and the other
// forms RFC 9110 allows.
func TestParseTimeAgreesWithNetHTTP(t *testing.T) {
	check := func(s string) {
		t.Helper()
		got, gerr := parseTime(s)
		want, werr := http.ParseTime(s)
		if (gerr == nil) != (werr == nil) || (gerr == nil && !got.Equal(want)) {
			t.Fatalf("parseTime(%q) = %v, %v; http.ParseTime = %v, %v", s, got, gerr, want, werr)
		}
	}
	for _, s := range []string{
		"Sun, 06 Nov 1994 08:49:37 GMT",  // RFC 9110's example
		"Sunday, 06-Nov-94 08:49:37 GMT", // RFC 850
		"Sun Nov  6 08:49:37 1994",       // asctime
		"Mon, 29 Feb 2016 00:00:00 GMT", "Mon, 29 Feb 2015 00:00:00 GMT", "Tue, 29 Feb 2000 23:59:59 GMT",
		"Tue, 29 Feb 1900 23:59:59 GMT", "Wed, 31 Apr 2026 10:00:00 GMT", "Wed, 00 Jan 2026 10:00:00 GMT",
		"Wed, 01 Jan 2026 24:00:00 GMT", "Wed, 01 Jan 2026 23:60:00 GMT", "Wed, 01 Jan 2026 23:59:60 GMT",
		"wed, 01 jan 2026 10:00:00 GMT", "Wed, 01 Jan 2026 10:00:00 UTC", "Wed, 01 Jan 2026 10:00:00 GMT+1",
		"Wed, 01 Jan 2026 1:00:00 GMT", "Wed, 01 Jan 2026 10:00:00.5 GMT", "Wed, 01 Jan 0000 10:00:00 GMT",
		"Wed, 01 Jan 2026 10:00:00 GMT ", " Wed, 01 Jan 2026 10:00:00 GMT", "0", "", "Xyz, 01 Jan 2026 10:00:00 GMT",
	} {
		check(s)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		d := time.Unix(r.Int64N(1<<34)-1<<32, 0).UTC()
		s := d.Format(http.TimeFormat)
		check(s)
		b := []byte(s)
		i := r.IntN(len(b))
		b[i] = "0123456789 :,-+.GMTUTCSunJanFebxyz\x00\xff"[r.IntN(36)]
		check(string(b))
	}
}

func BenchmarkParseTime(b *testing.B) {
	const s = "Sun, 06 Nov 1994 08:49:37 GMT"
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := parseTime(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("net/http", func(b *testing.B) {
		for b.Loop() {
			if _, err := http.ParseTime(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}
