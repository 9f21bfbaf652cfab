package bench

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/wal"
	"github.com/fedgate/fedgate/wal/head"
)

// appendBatch is the series of one Append in BenchmarkWALAppend: a
// mid-sized remote-write request, small enough that concurrent writers
// meet in one group commit.
const appendBatch = 500

// BenchmarkWALAppend is Storage.Append in steady state (every series held
// and logged: one samples record per Append) from 1, 8 and 64 concurrent
// writers, each a tenant pushing its own 500 series, on a real file system
// with a real fdatasync. It reports what group commit buys: fsyncs/s,
// appends per fsync, samples/s, log bytes per sample and Append latency.
func BenchmarkWALAppend(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			ctx := context.Background()
			reg := prometheus.NewRegistry()
			hd := head.New(head.Options{Retention: time.Hour, Now: func() time.Time { return benchNow }}, nil)
			st, err := wal.Open(b.TempDir(), hd, wal.Options{}, slog.New(slog.DiscardHandler), reg)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if err := st.Replay(); err != nil {
				b.Fatal(err)
			}
			batches := make([]*head.Batch, writers) // one tenant per writer
			for w := range batches {
				batches[w] = kubernetesBatch(fmt.Sprintf("cluster-%03d", w), 0, appendBatch)
			}
			t0 := benchNow.UnixMilli()
			for _, batch := range batches { // create and log every series
				setSamples(batch, t0)
				if err := st.Append(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			fsyncs0, bytes0 := walCounters(b, reg)

			var next atomic.Int64
			latencies := make([][]time.Duration, writers)
			for w := range latencies {
				latencies[w] = make([]time.Duration, 0, b.N/writers+1)
			}
			for w := range latencies {
				latencies[w] = make([]time.Duration, 0, b.N/writers+1)
			}
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for w := range writers {
				wg.Go(func() {
					batch := batches[w]
					for k := next.Add(1); k <= int64(b.N); k = next.Add(1) {
						setSamples(batch, t0+k)
						start := time.Now()
						if err := st.Append(ctx, batch); err != nil {
							b.Error(err)
							return
						}
						latencies[w] = append(latencies[w], time.Since(start))
					}
				})
			}
			wg.Wait()
			b.StopTimer()

			fsyncs1, bytes1 := walCounters(b, reg)
			secs := b.Elapsed().Seconds()
			samples := float64(b.N * appendBatch)
			fsyncs := fsyncs1 - fsyncs0
			b.ReportMetric(samples/secs, "samples/s")
			b.ReportMetric(fsyncs/secs, "fsyncs/s")
			b.ReportMetric(float64(b.N)/fsyncs, "appends/fsync")
			b.ReportMetric((bytes1-bytes0)/samples, "B/sample")
			all := slices.Concat(latencies...)
			slices.Sort(all)
			b.ReportMetric(float64(all[len(all)/2])/1e6, "p50-ms")
			b.ReportMetric(float64(all[len(all)*99/100])/1e6, "p99-ms")
		})
	}
}

// walCounters reads the WAL's fsync count and bytes written from reg.
func walCounters(b *testing.B, reg *prometheus.Registry) (fsyncs, bytes float64) {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	found := 0
	for _, mf := range mfs {
		switch mf.GetName() {
		case "fedgate_wal_fsync_duration_seconds":
			fsyncs = float64(mf.GetMetric()[0].GetHistogram().GetSampleCount())
			found++
		case "fedgate_wal_bytes_written_total":
			bytes = mf.GetMetric()[0].GetCounter().GetValue()
			found++
		}
	}
	if found != 2 {
		b.Fatal("fedgate_wal_fsync_duration_seconds or fedgate_wal_bytes_written_total not registered")
	}
	return fsyncs, bytes
}
