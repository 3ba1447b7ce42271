package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// stats summarise admitted requests per second as a share of the limit,
// over the seconds in which the driver really offered at least twice the
// limit (on a loaded machine it sometimes cannot: those seconds measure
// the driver, not the limiter, and are counted apart as starved).
type stats struct {
	mean, min, max   float64 // % of the limit
	seconds, starved int
	offeredMin       int64
	failed           int64
}

func summarise(secs []counts, limit int) stats {
	s := stats{min: math.Inf(1), max: math.Inf(-1), offeredMin: math.MaxInt64}
	var sum float64
	for _, c := range secs {
		s.offeredMin = min(s.offeredMin, c.offered)
		s.failed += c.failed
		if c.offered < int64(2*limit) {
			s.starved++
			continue
		}
		p := 100 * float64(c.admitted) / float64(limit)
		sum += p
		s.min, s.max = math.Min(s.min, p), math.Max(s.max, p)
		s.seconds++
	}
	if s.seconds == 0 {
		return stats{starved: s.starved, offeredMin: s.offeredMin}
	}
	s.mean = sum / float64(s.seconds)
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
// limit) and the recovery: how many seconds after the event the first
// run of five seconds all within ±2 % begins (-1: none).
func (r row) afterEvent(limit int) (worst float64, recovered int) {
	if r.event < 0 {
		return 0, 0
	}
	ok := func(i int) bool {
		p := 100 * float64(r.secs[i].admitted) / float64(limit)
		return p >= 98 && p <= 102
	}
	recovered = -1
	for i := r.event; i < len(r.secs); i++ {
		worst = math.Max(worst, 100*float64(r.secs[i].admitted)/float64(limit))
		if recovered >= 0 || i+5 > len(r.secs) {
			continue
		}
		run := true
		for j := i; j < i+5; j++ {
			run = run && ok(j)
		}
		if run {
			recovered = i - r.event
		}
	}
	return worst, recovered
}

func (r row) summary(limit int) string {
	s := summarise(r.steady(), limit)
	out := fmt.Sprintf("steady: mean %.1f%%, min %.1f%%, max %.1f%% of the limit over %d s (%d s starved); offered ≥ %d/s", s.mean, s.min, s.max, s.seconds, s.starved, s.offeredMin)
	if r.event >= 0 {
		w, rec := r.afterEvent(limit)
		out += fmt.Sprintf("; from the event: worst second %.1f%%, back within ±2%% after %d s", w, rec)
	}
	return out
}

// report writes the results as Markdown: one table, then each run's
// seconds.
func report(w io.Writer, o opts, rows []row) {
	fmt.Fprintf(w, "Limit %d/s on one key, %d/s offered, %s per run; the first 2 s are warm-up. Admitted per second as %% of the limit, "+
		"over the steady seconds (before the event, if any) in which the driver offered at least %d; the others are counted as starved. "+
		"Recovery: seconds from the event to the first run of 5 seconds all within ±2 %%.\n\n", o.limit, o.rate, o.dur, 2*o.limit)
	fmt.Fprintln(w, "| run | steady mean | steady min | steady max | steady s (starved) | from the event: worst second | recovery | failed requests |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		s := summarise(r.steady(), o.limit)
		worst, rec := "", ""
		if r.event >= 0 {
			wv, rv := r.afterEvent(o.limit)
			worst, rec = fmt.Sprintf("%.1f %%", wv), fmt.Sprintf("%d s", rv)
			if rv < 0 {
				rec = "none"
			}
		}
		fmt.Fprintf(w, "| %s | %.1f %% | %.1f %% | %.1f %% | %d (%d) | %s | %s | %d |\n", r.name, s.mean, s.min, s.max, s.seconds, s.starved, worst, rec, summarise(r.secs, o.limit).failed)
	}
	fmt.Fprintln(w, "\nAdmitted/offered per second, every run (the event, if any, before the marked second):")
	fmt.Fprintln(w)
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r.secs {
			if i == r.event {
				b.WriteString("| ")
			}
			fmt.Fprintf(&b, "%d/%d ", c.admitted, c.offered)
		}
		fmt.Fprintf(w, "- %s: %s\n", r.name, b.String())
	}
}
