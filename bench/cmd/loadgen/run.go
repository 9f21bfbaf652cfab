package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"time"
)

func run(ctx context.Context, c Config, out io.Writer) error {
	if _, err := url.Parse(c.URL); err != nil {
		return fmt.Errorf("parse -url: %w", err)
	}
	measuredEnd := c.WarmupRounds + c.Rounds
	rounds := measuredEnd + c.HalfRounds
	step := c.Interval.Milliseconds()
	// Every round of every phase is encoded now, stamped a step after the
	// one before, the last one step before now: every sample is in the
	// past and recent enough for any receiver's lookback.
	firstTS := time.Now().UnixMilli() - int64(rounds)*step

	t0 := time.Now()
	reqs, size, err := encode(c, rounds, firstTS, step)
	if err != nil {
		return err
	}
	runtime.GC()
	series := int64(c.Tenants) * int64(c.SeriesPerTenant)
	fmt.Fprintf(out, "encoded %d requests x %d rounds (%d series, %.1f MB snappy, %.0f B/series) in %s\n",
		len(reqs), rounds, series, float64(size)/1e6, float64(size)/float64(series*int64(rounds)), time.Since(t0).Round(time.Millisecond))

	s := newSender(c)
	if c.WarmupRounds > 0 {
		w := s.sendRounds(ctx, reqs, c.Concurrency, 0, c.WarmupRounds, nil)
		fmt.Fprintf(out, "warmup: %d rounds in %s, codes %s\n", c.WarmupRounds, w.elapsed.Round(time.Millisecond), codes(w))
		if w.firstErr != "" {
			fmt.Fprintf(out, "warmup: first error: %s\n", w.firstErr)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	var cpu0, cpu1 float64
	if c.PID > 0 {
		if cpu0, err = cpuSeconds(c.PID); err != nil {
			return err
		}
	}
	sched := newSchedule(reqs, c.Rate)
	st := s.sendRounds(ctx, reqs, c.Concurrency, c.WarmupRounds, measuredEnd, sched)
	var rss int64
	if c.PID > 0 {
		if cpu1, err = cpuSeconds(c.PID); err != nil {
			return err
		}
		if rss, err = peakRSSBytes(c.PID); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	rate := float64(st.accepted) / st.elapsed.Seconds()
	p50, p99 := st.percentile(0.50), st.percentile(0.99)
	cpu := cpu1 - cpu0
	fmt.Fprintf(out, "measured: %d rounds, %d requests, %d samples accepted in %s\n", c.Rounds, st.requests, st.accepted, st.elapsed.Round(time.Millisecond))
	if sched != nil {
		fmt.Fprintf(out, "  target samples/s    %.0f (-rate)\n", sched.rate)
	}
	printPhase(out, st, sched != nil)
	perCPU := 0.0
	if c.PID > 0 {
		if cpu > 0 {
			perCPU = float64(st.accepted) / cpu
		}
		fmt.Fprintf(out, "  receiver pid %d     cpu %.2f s (%.0f%% of one core), %.0f samples/cpu-s, peak RSS %.1f MB\n",
			c.PID, cpu, 100*cpu/st.elapsed.Seconds(), perCPU, float64(rss)/(1<<20))
	}

	// Half rate: the rounds after the measured ones, paced at half the
	// samples/s they reached, latency counted from each due time.
	var half string
	if c.HalfRounds > 0 && rate > 0 {
		hs := newSchedule(reqs, rate/2)
		h := s.sendRounds(ctx, reqs, c.Concurrency, measuredEnd, rounds, hs)
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintf(out, "half rate: %d rounds, %d requests, %d samples accepted in %s\n", c.HalfRounds, h.requests, h.accepted, h.elapsed.Round(time.Millisecond))
		fmt.Fprintf(out, "  target samples/s    %.0f (half the measured %.0f)\n", hs.rate, rate)
		printPhase(out, h, true)
		half = fmt.Sprintf(" half_rate=%.0f half_samples_per_s=%.0f half_p50_ms=%.3f half_p99_ms=%.3f half_errors=%d",
			hs.rate, float64(h.accepted)/h.elapsed.Seconds(), ms(h.percentile(0.50)), ms(h.percentile(0.99)), h.errors())
	} else if c.HalfRounds > 0 {
		fmt.Fprintf(out, "half rate: skipped, the measured rounds had no sample accepted\n")
	}

	fmt.Fprintf(out, "RESULT samples_per_s=%.0f p50_ms=%.3f p99_ms=%.3f cpu_s=%.2f samples_per_cpu_s=%.0f peak_rss_mb=%.1f errors=%d accepted=%d requests=%d%s\n",
		rate, ms(p50), ms(p99), cpu, perCPU, float64(rss)/(1<<20), st.errors(), st.accepted, st.requests, half)
	return nil
}

// printPhase prints what a phase saw, one item per line; paced adds how
// late the latest send started.
func printPhase(out io.Writer, st *stats, paced bool) {
	from := ""
	if paced {
		from = " (from due times)"
	}
	fmt.Fprintf(out, "  accepted samples/s  %.0f\n", float64(st.accepted)/st.elapsed.Seconds())
	fmt.Fprintf(out, "  latency             p50 %s  p99 %s  max %s%s\n", st.percentile(0.50).Round(time.Microsecond),
		st.percentile(0.99).Round(time.Microsecond), st.percentile(1).Round(time.Microsecond), from)
	if paced {
		fmt.Fprintf(out, "  latest send         %s after its due time\n", st.maxLag.Round(time.Microsecond))
	}
	fmt.Fprintf(out, "  status codes        %s\n", codes(st))
	if st.firstErr != "" {
		fmt.Fprintf(out, "  first error         %s\n", st.firstErr)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func codes(s *stats) string {
	keys := make([]string, 0, len(s.codes))
	for k := range s.codes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, s.codes[k])
	}
	return strings.Join(parts, " ")
}
