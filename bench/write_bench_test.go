package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"

	"github.com/fedgate/fedgate/gateway"
	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
	"github.com/fedgate/fedgate/wal/head"
)

var benchNow = time.UnixMilli(1_700_000_000_000)

// BenchmarkWriteHandler is one whole request through the handler in
// steady state (every series already held): auth, snappy, decode,
// validate, stamp, pack, head update, answer.
func BenchmarkWriteHandler(b *testing.B) {
	for _, n := range []int{100, 2000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			f, err := config.Parse([]byte("tenants: [{id: bench, token: bench-token, limits: {ingestion_rate: 1e12, ingestion_burst: 1000000000000}}]"))
			if err != nil {
				b.Fatal(err)
			}
			benchHandler(b, f, n, n, true)
		})
	}
	// As in bench/compare.sh: 100k held series, pushed 2,000 per request,
	// so the head is far larger than the CPU caches.
	// known=false turns the memo of known series off: every series takes
	// the full path (validate, pack, head lookup), as in a push's first.
	for _, known := range []bool{true, false} {
		b.Run(fmt.Sprintf("series=2000/held=100000/known=%v", known), func(b *testing.B) {
			f, err := config.Parse([]byte("tenants: [{id: bench, token: bench-token, limits: {ingestion_rate: 1e12, ingestion_burst: 1000000000000}}]"))
			if err != nil {
				b.Fatal(err)
			}
			benchHandler(b, f, 2000, 100_000, known)
		})
	}
}

// benchHandler sends n-series requests through a handler configured by f,
// in turn over held series cut into requests, every series already held;
// known says whether the handler may use the head's memo of known series.
func benchHandler(b *testing.B, f *config.File, n, held int, known bool) {
	all := remotewritetest.Kubernetes(held, 1)
	var bodies [][]byte
	for i := 0; i < held; i += n {
		raw, err := (&prompb.WriteRequest{Timeseries: all.Timeseries[i:min(i+n, held)]}).Marshal()
		if err != nil {
			b.Fatal(err)
		}
		bodies = append(bodies, snappy.Encode(nil, raw))
	}
	s, err := gateway.NewSettings(f)
	if err != nil {
		b.Fatal(err)
	}
	now := func() time.Time { return benchNow }
	hd := head.New(head.Options{Retention: time.Hour, Now: now}, nil)
	opts := gateway.WriteOptions{Now: now}
	if known {
		opts.Head = hd
	}
	h := gateway.NewWriteHandler(s, hd, opts, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	next := 0
	send := func() {
		body := bodies[next%len(bodies)]
		next++
		r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/x-protobuf")
		r.Header.Set("Content-Encoding", "snappy")
		r.Header.Set("Authorization", "Bearer bench-token")
		w := discardWriter{}
		h.ServeHTTP(&w, r)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	}
	for range bodies {
		send()
	}
	if hd.NumSeries() != held {
		b.Fatalf("%d series held, want %d", hd.NumSeries(), held)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(bodies[0])))
	for b.Loop() {
		send()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// typicalPipeline is a realistic tenant pipeline: five relabel rules (drop
// a label, rewrite a path-like value, add a static label, keep by name,
// shard by hash) and two anonymized labels.
const typicalPipeline = `
relabel_configs:
  - {action: labeldrop, regex: endpoint}
  - {source_labels: [pod], regex: '(.+)-[a-z0-9]+-[a-z0-9]+', target_label: workload, replacement: '$1'}
  - {action: replace, target_label: env, replacement: prod}
  - {action: keep, source_labels: [__name__], regex: '.+'}
  - {action: hashmod, source_labels: [instance], modulus: 16, target_label: shard}
anonymize: {labels: [instance, node], secret_file: anon.key}
`

// BenchmarkWriteHandlerPipeline is BenchmarkWriteHandler/series=2000 with
// typicalPipeline applied: compare its samples/s with the plain one.
func BenchmarkWriteHandlerPipeline(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "anon.key"), []byte("bench-secret"), 0o600); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "fedgate.yml")
	cfg := typicalPipeline + "tenants: [{id: bench, token: bench-token, limits: {ingestion_rate: 1e12, ingestion_burst: 1000000000000}}]\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	benchHandler(b, f, 2000, 2000, true)
}

// BenchmarkHeadAppend is the head update alone, for packed label sets.
func BenchmarkHeadAppend(b *testing.B) {
	req := remotewritetest.Kubernetes(2000, 1)
	batch := &head.Batch{Tenant: "bench"}
	for _, ts := range req.Timeseries {
		var lbls []byte
		for _, l := range ts.Labels {
			lbls = head.AppendLabel(lbls, l.Name, l.Value)
		}
		batch.Series = append(batch.Series, head.BatchSeries{Labels: lbls, Samples: []head.Sample{{T: benchNow.UnixMilli(), V: 1}}})
	}
	hd := head.New(head.Options{Retention: time.Hour, Now: func() time.Time { return benchNow }}, nil)
	ctx := context.Background()
	_ = hd.Append(ctx, batch)
	b.ReportAllocs()
	for b.Loop() {
		_ = hd.Append(ctx, batch)
	}
	b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "samples/s")
}

type discardWriter struct {
	hdr  http.Header
	code int
}

func (w *discardWriter) Header() http.Header {
	if w.hdr == nil {
		w.hdr = http.Header{}
	}
	return w.hdr
}
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
