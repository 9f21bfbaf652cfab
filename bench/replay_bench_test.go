package bench

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedgate/fedgate/wal"
	"github.com/fedgate/fedgate/wal/head"
)

// replayBatch is the number of series in one Append while the data
// directory is built: a large remote-write request.
const replayBatch = 2000

// BenchmarkReplay is a restart: Open and Replay of a data directory into a
// fresh head, until the Storage is ready. The directory holds what a
// restart finds at worst: a checkpoint of every series, then the segments
// of three more samples of each series (a minute of 15 s scrapes, the
// default checkpoint interval), everything written through Storage.Append.
//
// series=1M takes some 10 s and 2 GB to set up: it is skipped unless
// -bench names it (-bench='Replay/series=1M') or FEDGATE_BENCH_1M=1 is
// set, so that `make test` stays fast.
func BenchmarkReplay(b *testing.B) {
	for _, size := range []struct {
		name   string
		series int
	}{{"100k", 100_000}, {"1M", 1_000_000}} {
		b.Run("series="+size.name, func(b *testing.B) {
			if size.series >= 1_000_000 && !bench1MSelected() {
				b.Skip("set FEDGATE_BENCH_1M=1 or -bench='Replay/series=1M' to run")
			}
			dir := b.TempDir()
			buildDataDir(b, dir, size.series)
			cpBytes, segBytes := walSizes(b, dir)
			runtime.GC() // the builder's head is garbage now

			b.ReportAllocs()
			var cpu time.Duration
			for b.Loop() {
				cpu0 := cpuTime(b)
				hd := head.New(head.Options{Retention: time.Hour, Now: func() time.Time { return benchNow }}, nil)
				st, err := wal.Open(dir, hd, wal.Options{}, slog.New(slog.DiscardHandler), nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := st.Replay(); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime(b) - cpu0
				b.StopTimer()
				if hd.NumSeries() != size.series {
					b.Fatalf("replay restored %d series, want %d", hd.NumSeries(), size.series)
				}
				if err := st.Close(); err != nil {
					b.Fatal(err)
				}
				hd, st = nil, nil
				runtime.GC() // each restart starts from an empty heap
				b.StartTimer()
			}
			perReplay := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(perReplay, "s/restart")
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/restart")
			b.ReportMetric(float64(size.series)/perReplay, "series/s")
			b.ReportMetric(float64(cpBytes)/(1<<20), "checkpoint-MiB")
			b.ReportMetric(float64(segBytes)/(1<<20), "segments-MiB")
		})
	}
}

// cpuTime returns the user and system CPU time of the process so far: on
// a shared machine it shows what a restart costs when wall time does not.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bench1MSelected reports whether the 1M-series runs were asked for.
func bench1MSelected() bool {
	if os.Getenv("FEDGATE_BENCH_1M") == "1" {
		return true
	}
	f := flag.Lookup("test.bench")
	return f != nil && strings.Contains(f.Value.String(), "1M")
}

// buildDataDir writes n series through a Storage in batches of
// replayBatch, checkpoints, then writes three more samples of every series.
func buildDataDir(b *testing.B, dir string, n int) {
	b.Helper()
	ctx := context.Background()
	hd := head.New(head.Options{Retention: time.Hour, Now: func() time.Time { return benchNow }}, nil)
	st, err := wal.Open(dir, hd, wal.Options{}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Replay(); err != nil { // an empty directory: makes st ready
		b.Fatal(err)
	}
	batches := kubernetesBatches(n, replayBatch)
	t0 := benchNow.UnixMilli() - 4*15_000
	for round := range 4 {
		if round == 1 {
			if err := st.Checkpoint(); err != nil {
				b.Fatal(err)
			}
		}
		for _, batch := range batches {
			setSamples(batch, t0+int64(round)*15_000)
			if err := st.Append(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	if hd.NumSeries() != n {
		b.Fatalf("built %d series, want %d", hd.NumSeries(), n)
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
}

// walSizes returns the bytes of checkpoints and of segments under dir.
func walSizes(b *testing.B, dir string) (checkpoints, segments int64) {
	b.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "wal"))
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			b.Fatal(err)
		}
		if strings.HasPrefix(e.Name(), "checkpoint.") {
			checkpoints += fi.Size()
		} else {
			segments += fi.Size()
		}
	}
	return checkpoints, segments
}

// setSamples gives every series of batch one sample at t.
func setSamples(batch *head.Batch, t int64) {
	for i := range batch.Series {
		s := batch.Series[i].Samples
		s[0] = head.Sample{T: t, V: float64(i) + float64(t%100_000)/8}
	}
}

// Label values of kubernetesBatches' series.
var (
	k8sMetrics = [...]string{
		"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
		"container_network_receive_bytes_total", "kube_pod_status_phase",
		"kube_deployment_status_replicas_available", "apiserver_request_total",
		"http_server_requests_seconds_count", "http_server_requests_seconds_bucket",
		"go_goroutines", "process_resident_memory_bytes", "up",
	}
	k8sNamespaces  = [...]string{"kube-system", "monitoring", "default", "payments", "checkout", "ingress-nginx", "cert-manager", "logging"}
	k8sDeployments = [...]string{"coredns", "kube-proxy", "prometheus-operator", "api-gateway", "checkout-service", "payment-worker", "nginx-ingress-controller", "fluent-bit"}
)

// tenantSeries is how many series one tenant (one cluster) pushes in
// kubernetesBatches.
const tenantSeries = 100_000

// kubernetesBatches returns n distinct series in batches of size, the
// series of each tenant (tenantSeries of them, one cluster) in batches of
// their own.
func kubernetesBatches(n, size int) []*head.Batch {
	var batches []*head.Batch
	for start := 0; start < n; {
		end := min(start+size, n, (start/tenantSeries+1)*tenantSeries)
		batches = append(batches, kubernetesBatch(fmt.Sprintf("cluster-%03d", start/tenantSeries), start, end-start))
		start = end
	}
	return batches
}

// kubernetesBatch returns a batch of tenant with series first to first+n-1,
// each with one sample. They carry the labels a Prometheus scraping
// Kubernetes sends (remotewritetest.Kubernetes' shape) and the cluster
// label fedgate stamps, packed and sorted as the write handler hands them
// to the Storage; every pod exposes one series of each of 11 metrics.
// Unlike remotewritetest.Kubernetes it never repeats a series and costs no
// protobuf, which matters at a million series.
func kubernetesBatch(tenant string, first, n int) *head.Batch {
	var buf []byte
	ends := make([]int, n)
	for i := range n {
		buf = appendKubernetesLabels(buf, tenant, first+i)
		ends[i] = len(buf)
	}
	batch := &head.Batch{Tenant: tenant, Series: make([]head.BatchSeries, n)}
	samples := make([]head.Sample, n)
	prev := 0
	for i, end := range ends {
		batch.Series[i] = head.BatchSeries{Labels: buf[prev:end:end], Samples: samples[i : i+1 : i+1]}
		prev = end
	}
	return batch
}

// appendKubernetesLabels appends the packed labels of series i.
func appendKubernetesLabels(b []byte, cluster string, i int) []byte {
	pod := i / len(k8sMetrics)
	deploy := k8sDeployments[pod%len(k8sDeployments)]
	ns := k8sNamespaces[(pod/len(k8sDeployments))%len(k8sNamespaces)]
	h := uint64(pod+1) * 0x9e3779b97f4a7c15 // spreads pod numbers over the hash suffixes
	const alnum = "bcdfghjklmnpqrstvwxz2456789"
	suffix := [5]byte{}
	for k := range suffix {
		suffix[k] = alnum[(h>>(8*k))%uint64(len(alnum))]
	}
	b = head.AppendLabel(b, "__name__", k8sMetrics[i%len(k8sMetrics)])
	b = head.AppendLabel(b, "cluster_id", cluster)
	b = head.AppendLabel(b, "container", deploy)
	b = head.AppendLabel(b, "endpoint", "http-metrics")
	b = head.AppendLabel(b, "instance", fmt.Sprintf("10.%d.%d.%d:8080", (pod>>16)&0xff, (pod>>8)&0xff, pod&0xff))
	b = head.AppendLabel(b, "job", ns+"/"+deploy)
	b = head.AppendLabel(b, "namespace", ns)
	b = head.AppendLabel(b, "node", fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", (pod/40)&0xff, (pod/40>>8)&0xff))
	b = head.AppendLabel(b, "pod", fmt.Sprintf("%s-%010x-%s", deploy, h>>24&0xffffffffff, suffix[:]))
	return head.AppendLabel(b, "service", deploy)
}
