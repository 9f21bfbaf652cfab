package federate

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
	"github.com/fedgate/fedgate/wal/head"
)

// BenchmarkFederate writes every held series of a head, plain and gzip'd, to
// a discarding writer. The head looks like the production load: 50 tenants
// of Kubernetes series (remotewritetest.Kubernetes) under a cluster_id label,
// 11 families, about 320 bytes per exposition line; the handler checks
// ownership, as main.go's does.
func BenchmarkFederate(b *testing.B) {
	for _, n := range []int{100_000} {
		hd := kubernetesHead(b, 50, n/50)
		h := newHandler(hd)
		h.OnlyOwned(func(string) bool { return true })
		for _, gz := range []bool{false, true} {
			b.Run(fmt.Sprintf("series=%d/gzip=%v", n, gz), func(b *testing.B) {
				r := httptest.NewRequest(http.MethodGet, "/federate?match[]="+url.QueryEscape(`{__name__=~".+"}`), nil)
				if gz {
					r.Header.Set("Accept-Encoding", "gzip")
				}
				w, body := get(b, h, gz, `{__name__=~".+"}`)
				if lines := strings.Count(body, "\n") - strings.Count(body, "# TYPE "); lines != n || len(body) < n*250 {
					b.Fatalf("a response of %d series in %d bytes, want %d series of Kubernetes size", lines, len(body), n)
				}
				b.SetBytes(int64(w.Body.Len()))
				runtime.GC() // the check's garbage, a response's size, not on the clock
				b.ReportAllocs()
				for b.Loop() {
					h.ServeHTTP(&countingWriter{hdr: http.Header{}}, r)
				}
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "series/s")
			})
		}
	}
}

// kubernetesHead returns a head holding perTenant Kubernetes series for
// each of tenants tenants, t-000, t-001..., each series labelled with its
// tenant as cluster_id, as the write path labels them.
func kubernetesHead(b *testing.B, tenants, perTenant int) *head.Head {
	b.Helper()
	hd := head.New(head.Options{Retention: time.Hour, Now: func() time.Time { return now }}, prometheus.NewRegistry())
	wr := remotewritetest.Kubernetes(perTenant, 1)
	var buf []byte
	for t := range tenants {
		tenant := fmt.Sprintf("t-%03d", t)
		batch := &head.Batch{Tenant: tenant, Series: make([]head.BatchSeries, len(wr.Timeseries))}
		for i, ts := range wr.Timeseries {
			// __name__ sorts before cluster_id, every other label after.
			buf = head.AppendLabel(buf[:0], ts.Labels[0].Name, ts.Labels[0].Value)
			buf = head.AppendLabel(buf, "cluster_id", tenant)
			for _, l := range ts.Labels[1:] {
				buf = head.AppendLabel(buf, l.Name, l.Value)
			}
			batch.Series[i] = head.BatchSeries{
				Labels:  append([]byte(nil), buf...),
				Samples: []head.Sample{{T: ts.Samples[0].Timestamp, V: ts.Samples[0].Value}},
			}
		}
		if err := hd.Append(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	if got := hd.NumSeries(); got != tenants*perTenant {
		b.Fatalf("the head holds %d series, want %d", got, tenants*perTenant)
	}
	return hd
}
