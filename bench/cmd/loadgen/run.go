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
	rounds := c.WarmupRounds + c.Rounds
	step := c.Interval.Milliseconds()
	// The last round is stamped one step before now, so every sample is
	// in the past and recent enough for any receiver's lookback.
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
		w := s.sendRounds(ctx, reqs, c.Concurrency, 0, c.WarmupRounds)
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
	st := s.sendRounds(ctx, reqs, c.Concurrency, c.WarmupRounds, rounds)
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

	secs := st.elapsed.Seconds()
	p50, p99 := st.percentile(0.50), st.percentile(0.99)
	cpu := cpu1 - cpu0
	fmt.Fprintf(out, "measured: %d rounds, %d requests, %d samples accepted in %s\n", c.Rounds, st.requests, st.accepted, st.elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "  accepted samples/s  %.0f\n", float64(st.accepted)/secs)
	fmt.Fprintf(out, "  latency             p50 %s  p99 %s  max %s\n", p50.Round(time.Microsecond), p99.Round(time.Microsecond), st.percentile(1).Round(time.Microsecond))
	fmt.Fprintf(out, "  status codes        %s\n", codes(st))
	if st.firstErr != "" {
		fmt.Fprintf(out, "  first error         %s\n", st.firstErr)
	}
	perCPU := 0.0
	if c.PID > 0 {
		if cpu > 0 {
			perCPU = float64(st.accepted) / cpu
		}
		fmt.Fprintf(out, "  receiver pid %d     cpu %.2f s (%.0f%% of one core), %.0f samples/cpu-s, peak RSS %.1f MB\n",
			c.PID, cpu, 100*cpu/secs, perCPU, float64(rss)/(1<<20))
	}
	fmt.Fprintf(out, "RESULT samples_per_s=%.0f p50_ms=%.3f p99_ms=%.3f cpu_s=%.2f samples_per_cpu_s=%.0f peak_rss_mb=%.1f errors=%d accepted=%d requests=%d\n",
		float64(st.accepted)/secs, ms(p50), ms(p99), cpu, perCPU, float64(rss)/(1<<20), st.errors(), st.accepted, st.requests)
	return nil
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
