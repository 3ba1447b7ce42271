package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// stats summarise admitted requests per second as a share of the limit.
type stats struct {
	mean, min, max float64 // % of the limit
	offeredMin     int64
	failed         int64
}

func summarise(secs []counts, limit int) stats {
	s := stats{min: math.Inf(1), max: math.Inf(-1), offeredMin: math.MaxInt64}
	if len(secs) == 0 {
		return stats{}
	}
	var sum float64
	for _, c := range secs {
		p := 100 * float64(c.admitted) / float64(limit)
		sum += p
		s.min, s.max = math.Min(s.min, p), math.Max(s.max, p)
		s.offeredMin = min(s.offeredMin, c.offered)
		s.failed += c.failed
	}
	s.mean = sum / float64(len(secs))
	return s
}

// steady is the row's steady seconds: after warm-up, and, for a row with
// an event, before it.
func (r row) steady() []counts {
	if r.event >= 0 {
		return r.secs[r.steadyFrom:r.event]
	}
	return r.secs[r.steadyFrom:]
}

// afterEvent reports the worst second from the event on (% of the
// limit) and how many seconds after the event every later second stays
// within ±2 %.
func (r row) afterEvent(limit int) (worst float64, recovered int) {
	if r.event < 0 {
		return 0, 0
	}
	recovered = -1
	for i := r.event; i < len(r.secs); i++ {
		p := 100 * float64(r.secs[i].admitted) / float64(limit)
		worst = math.Max(worst, p)
		if p < 98 || p > 102 {
			recovered = -1
		} else if recovered < 0 {
			recovered = i - r.event
		}
	}
	return worst, recovered
}

func (r row) summary(limit int) string {
	s := summarise(r.steady(), limit)
	out := fmt.Sprintf("steady: mean %.1f%%, min %.1f%%, max %.1f%% of the limit; offered ≥ %d/s", s.mean, s.min, s.max, s.offeredMin)
	if r.event >= 0 {
		w, rec := r.afterEvent(limit)
		out += fmt.Sprintf("; from the event: worst second %.1f%%, back within ±2%% after %d s", w, rec)
	}
	return out
}

// report writes the results as Markdown: one table, then each run's
// seconds.
func report(w io.Writer, o opts, rows []row) {
	fmt.Fprintf(w, "Limit %d/s on one key, %d/s offered, %s per run; the first 2 s are warm-up. Admitted per second as %% of the limit.\n\n", o.limit, o.rate, o.dur)
	fmt.Fprintln(w, "| run | steady mean | steady min | steady max | from the event: worst second | back within ±2 % after | offered/s (min) | failed |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		s := summarise(r.steady(), o.limit)
		worst, rec := "", ""
		if r.event >= 0 {
			wv, rv := r.afterEvent(o.limit)
			worst, rec = fmt.Sprintf("%.1f %%", wv), fmt.Sprintf("%d s", rv)
			if rv < 0 {
				rec = "never"
			}
		}
		fmt.Fprintf(w, "| %s | %.1f %% | %.1f %% | %.1f %% | %s | %s | %d | %d |\n", r.name, s.mean, s.min, s.max, worst, rec, s.offeredMin, summarise(r.secs, o.limit).failed)
	}
	fmt.Fprintln(w, "\nAdmitted per second, every run (the event, if any, at the marked second):")
	fmt.Fprintln(w)
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r.secs {
			if i == r.event {
				b.WriteString("| ")
			}
			fmt.Fprintf(&b, "%d ", c.admitted)
		}
		fmt.Fprintf(w, "- %s: %s(offers dropped by the driver: %d)\n", r.name, b.String(), r.lag)
	}
}
