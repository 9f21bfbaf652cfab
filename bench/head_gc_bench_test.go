package bench

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
	"github.com/fedgate/fedgate/wal/head"
)

// BenchmarkHeadGCCycle is one whole Go GC cycle (runtime.GC) with a head of
// 100k Kubernetes-like series live and nothing else: the mark work the
// head costs every cycle. On one CPU, pushes wait behind it (mark assists,
// the mark worker's turns); at 1M series it decided the p99 of pushes.
// heap-B/series is the live heap the head takes per series.
func BenchmarkHeadGCCycle(b *testing.B) {
	const series = 100_000
	hd := head.New(head.Options{Retention: time.Hour, Now: func() time.Time { return benchNow }}, nil)
	req := remotewritetest.Kubernetes(series, 1)
	for from := 0; from < series; from += 2000 {
		batch := &head.Batch{Tenant: "bench"}
		for _, ts := range req.Timeseries[from : from+2000] {
			var lbls []byte
			for _, l := range ts.Labels {
				lbls = head.AppendLabel(lbls, l.Name, l.Value)
			}
			batch.Series = append(batch.Series, head.BatchSeries{Labels: lbls, Samples: []head.Sample{{T: benchNow.UnixMilli(), V: 1}}})
		}
		if err := hd.Append(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	req = nil
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportAllocs()
	for b.Loop() {
		runtime.GC()
	}
	b.ReportMetric(float64(ms.HeapAlloc)/series, "heap-B/series")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*series), "ns/series")
	runtime.KeepAlive(hd)
}
