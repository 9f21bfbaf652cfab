package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/fedgate/fedgate/gateway"
	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/ring"
	"github.com/fedgate/fedgate/wal/head"
)

// statusPage serves the internal listener's "/": configuration in force,
// per-tenant series and limits, and the ring.
func statusPage(current func() *config.File, hd *head.Head, cur *ring.Current, writes *gateway.WriteHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		cfg := current()
		rng := cur.Load()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "fedgate\n\ncluster label:  %s\nring members:   %d\nheld series:    %d\nretention:      %s\n\nendpoints: /federate?match[]=..., /metrics, POST /-/reload\n",
			cfg.ClusterLabel, rng.Members(), hd.NumSeries(), cfg.Storage.Retention)
		stats := map[string]gateway.TenantStats{}
		for _, s := range writes.TenantStats() {
			stats[s.ID] = s
		}
		fmt.Fprintf(w, "\ntenants:\n  %-24s %12s %12s %14s %16s %12s  %s\n", "id", "series", "max_series", "rate-limited", "series-limited", "discarded", "last limited")
		for _, t := range cfg.Tenants {
			s := stats[t.ID]
			last := "never"
			if !s.LastLimited.IsZero() {
				last = time.Since(s.LastLimited).Round(time.Second).String() + " ago"
			}
			fmt.Fprintf(w, "  %-24s %12d %12d %14d %16d %12d  %s\n", t.ID, hd.TenantSeries(t.ID), t.Limits.MaxSeries,
				s.RateLimitedRequests, s.SeriesLimitedSamples, s.DiscardedSamples, last)
		}
		fmt.Fprintf(w, "\nrate-limited: requests answered 429 by ingestion_rate; series-limited and discarded: samples\n")
		fmt.Fprintf(w, "\nring (this instance: %s):\n", rng.Self().Name)
		for i, m := range rng.MemberList() {
			fmt.Fprintf(w, "  %3d  %-30s %s\n", i, m.Name, m.URL)
		}
	}
}
