package federate

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/wal/head"
)

// BenchmarkFederate writes every held series of a head of n Kubernetes-like
// series, plain and gzip'd, to a discarding writer.
func BenchmarkFederate(b *testing.B) {
	for _, n := range []int{100_000} {
		hd := head.New(head.Options{Retention: time.Hour, Now: func() time.Time { return now }}, prometheus.NewRegistry())
		for i := range n {
			appendSeries(b, hd, now.UnixMilli(), float64(i)*1.5,
				"__name__", fmt.Sprintf("kube_metric_%d", i%200), "cluster_id", fmt.Sprintf("cluster-%d", i%50),
				"container", "app", "instance", fmt.Sprintf("10.0.%d.%d:8080", i/256%256, i%256), "job", "kubelet",
				"namespace", fmt.Sprintf("ns-%d", i%40), "pod", fmt.Sprintf("app-%08x-%05d", i*7919, i))
		}
		h := newHandler(hd)
		for _, gz := range []bool{false, true} {
			b.Run(fmt.Sprintf("series=%d/gzip=%v", n, gz), func(b *testing.B) {
				r := httptest.NewRequest(http.MethodGet, "/federate?match[]="+url.QueryEscape(`{__name__=~".+"}`), nil)
				if gz {
					r.Header.Set("Accept-Encoding", "gzip")
				}
				w := &countingWriter{hdr: http.Header{}}
				h.ServeHTTP(w, r)
				if w.n < n*50/map[bool]int{false: 1, true: 20}[gz] {
					b.Fatalf("a response of %d bytes for %d series", w.n, n)
				}
				b.SetBytes(int64(w.n))
				b.ReportAllocs()
				for b.Loop() {
					h.ServeHTTP(&countingWriter{hdr: http.Header{}}, r)
				}
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "series/s")
			})
		}
	}
}
