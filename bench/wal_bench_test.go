package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/gateway"
	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
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
			runWriters(b, reg, writers, appendBatch, func(w int, k int64) error {
				setSamples(batches[w], t0+k)
				return st.Append(ctx, batches[w])
			})
		})
	}
}

// BenchmarkWritePathWAL is the whole write path with durable acks: remote-
// write requests of 500 series through the gateway's handler (auth, snappy,
// decode, validate, stamp, pack) into the WAL and head, from 1, 8 and 64
// concurrent writers, each a tenant of its own. Each writer cycles through
// 16 pre-encoded requests with increasing timestamps; later rounds repeat
// timestamps, which costs the same to log and fsync.
func BenchmarkWritePathWAL(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			reg := prometheus.NewRegistry()
			now := func() time.Time { return benchNow }
			hd := head.New(head.Options{Retention: time.Hour, Now: now}, nil)
			st, err := wal.Open(b.TempDir(), hd, wal.Options{}, slog.New(slog.DiscardHandler), reg)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if err := st.Replay(); err != nil {
				b.Fatal(err)
			}
			var tenants strings.Builder
			tenants.WriteString("tenants:\n")
			for w := range writers {
				fmt.Fprintf(&tenants, "  - {id: cluster-%03d, token: token-%03d, limits: {ingestion_rate: 1e12, ingestion_burst: 1000000000000}}\n", w, w)
			}
			f, err := config.Parse([]byte(tenants.String()))
			if err != nil {
				b.Fatal(err)
			}
			settings, err := gateway.NewSettings(f)
			if err != nil {
				b.Fatal(err)
			}
			h := gateway.NewWriteHandler(settings, st, gateway.WriteOptions{Now: now, MaxConcurrent: writers, Head: hd}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			const rounds = 16
			bodies := make([][][]byte, writers)
			for w := range bodies {
				for r := range rounds {
					req := remotewritetest.Kubernetes(appendBatch, 1)
					for i := range req.Timeseries {
						req.Timeseries[i].Samples[0].Timestamp = benchNow.UnixMilli() - 60_000 + int64(r)
					}
					raw, err := req.Marshal()
					if err != nil {
						b.Fatal(err)
					}
					bodies[w] = append(bodies[w], snappy.Encode(nil, raw))
				}
			}
			send := func(w int, k int64) error {
				r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(bodies[w][k%rounds]))
				r.Header.Set("Content-Type", "application/x-protobuf")
				r.Header.Set("Content-Encoding", "snappy")
				r.Header.Set("Authorization", fmt.Sprintf("Bearer token-%03d", w))
				rw := &discardWriter{}
				h.ServeHTTP(rw, r)
				if rw.code != http.StatusNoContent {
					return fmt.Errorf("status %d", rw.code)
				}
				return nil
			}
			for w := range writers { // create and log every series
				if err := send(w, 0); err != nil {
					b.Fatal(err)
				}
			}
			runWriters(b, reg, writers, appendBatch, send)
		})
	}
}

// runWriters calls fn(w, k) from writers goroutines until b.N calls are
// made (k counts from 1), then reports samples/s (perCall samples a call),
// fsyncs/s, calls per fsync, log bytes per sample and call latency.
func runWriters(b *testing.B, reg *prometheus.Registry, writers, perCall int, fn func(w int, k int64) error) {
	fsyncs0, bytes0 := walCounters(b, reg)
	var next atomic.Int64
	latencies := make([][]time.Duration, writers)
	for w := range latencies {
		latencies[w] = make([]time.Duration, 0, b.N/writers+1)
	}
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for w := range writers {
		wg.Go(func() {
			for k := next.Add(1); k <= int64(b.N); k = next.Add(1) {
				start := time.Now()
				if err := fn(w, k); err != nil {
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
	samples := float64(b.N * perCall)
	fsyncs := fsyncs1 - fsyncs0
	b.ReportMetric(samples/secs, "samples/s")
	b.ReportMetric(fsyncs/secs, "fsyncs/s")
	b.ReportMetric(float64(b.N)/fsyncs, "calls/fsync")
	b.ReportMetric((bytes1-bytes0)/samples, "B/sample")
	all := slices.Concat(latencies...)
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100])/1e6, "p99-ms")
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
