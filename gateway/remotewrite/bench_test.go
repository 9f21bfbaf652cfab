package remotewrite_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/prompb"

	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
)

// benchSizes returns the request sizes benchmarked, in series of one
// sample each: a small push and a full default Prometheus batch
// (queue_config.max_samples_per_send is 2000).
func benchSizes() []int { return []int{100, 2000} }

func BenchmarkUnmarshal(b *testing.B) {
	for _, n := range benchSizes() {
		payload := remotewritetest.KubernetesBytes(n, 1)
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			var r remotewrite.Request
			if err := r.Unmarshal(payload); err != nil { // grow the pooled slices
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if err := r.Unmarshal(payload); err != nil {
					b.Fatal(err)
				}
			}
			reportSamples(b, n)
		})
	}
}

// BenchmarkPrompbUnmarshal is the baseline: gogo's generated decoder on the
// same payloads, reusing the request's slices as far as gogo allows.
func BenchmarkPrompbUnmarshal(b *testing.B) {
	for _, n := range benchSizes() {
		payload := remotewritetest.KubernetesBytes(n, 1)
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			var wr prompb.WriteRequest
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				wr.Timeseries = wr.Timeseries[:0]
				if err := wr.Unmarshal(payload); err != nil {
					b.Fatal(err)
				}
			}
			reportSamples(b, n)
		})
	}
}

func reportSamples(b *testing.B, perOp int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(perOp)*float64(b.N)/s, "samples/s")
	}
}
