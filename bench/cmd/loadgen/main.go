// Command loadgen pushes pre-encoded remote-write 1.0 requests at a receiver
// (fedgate, Prometheus, VictoriaMetrics) and reports accepted samples per
// second, status codes, latency percentiles and, given the receiver's pid,
// its CPU seconds, samples per CPU-second and peak RSS.
//
// Every tenant holds -series-per-tenant series shaped like a Kubernetes
// cluster's (remotewritetest.Kubernetes), cut into requests of
// -series-per-request series. One round sends every series one new sample.
// All request bodies of all rounds are encoded (protobuf, snappy) before
// any is sent, so timing never includes encoding. Each sender owns a fixed
// shard of the requests, so every series' timestamps strictly increase.
//
// Phases, one after the other in one run (a second run would send older
// timestamps than the first): -warmup-rounds, not measured; -rounds,
// measured, as fast as answers come back or paced at -rate samples/s;
// then -half-rounds paced at half the samples/s the measured rounds
// reached. A paced phase is open-loop: requests are due at fixed intervals
// and each latency counts from its request's due time (see schedule).
//
// The last line of output is machine-readable; the half_ keys are there
// only when the half-rate phase ran:
//
//	RESULT samples_per_s=... p50_ms=... p99_ms=... cpu_s=... samples_per_cpu_s=... peak_rss_mb=... errors=... accepted=... requests=... half_rate=... half_samples_per_s=... half_p50_ms=... half_p99_ms=... half_errors=...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:9095/api/v1/write", "remote-write endpoint")
	fs.IntVar(&c.Tenants, "tenants", 10, "tenants t-000, t-001, ... with tokens tok-000, tok-001, ...")
	fs.IntVar(&c.SeriesPerTenant, "series-per-tenant", 10000, "series held per tenant")
	fs.IntVar(&c.SeriesPerRequest, "series-per-request", 2000, "series (= samples) per request; Prometheus' max_samples_per_send default")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "concurrent senders, each owning a fixed shard of the requests")
	fs.IntVar(&c.Rounds, "rounds", 5, "measured rounds; each sends every series one new sample")
	fs.IntVar(&c.WarmupRounds, "warmup-rounds", 1, "rounds sent before measuring (the first creates the series)")
	fs.IntVar(&c.HalfRounds, "half-rounds", 0, "after the measured rounds, this many more paced at half their accepted samples/s; 0: none")
	fs.Float64Var(&c.Rate, "rate", 0, "pace the measured rounds at this many samples/s; 0: as fast as possible")
	fs.StringVar(&c.Auth, "auth", "bearer", "bearer (tok-NNN), basic (t-NNN / tok-NNN) or none")
	fs.StringVar(&c.TenantLabel, "tenant-label", "", "if set, add this label with the tenant ID to every series (keeps tenants apart in receivers without tenants)")
	fs.IntVar(&c.PID, "pid", 0, "receiver's pid: report its CPU seconds and peak RSS from /proc")
	fs.DurationVar(&c.Interval, "interval", 15*time.Second, "timestamp step between rounds; the last round is stamped just before now")
	fs.DurationVar(&c.Timeout, "timeout", time.Minute, "per-request timeout")
	fs.DurationVar(&c.LogSlow, "log-slow", 0, "print to stderr each request slower than this, with the UTC time it was due; 0: none")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c, c.Validate()
}
