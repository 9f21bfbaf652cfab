package remotewritetest

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/prometheus/prometheus/prompb"
)

// Kubernetes returns a request that looks like what a Prometheus scraping a
// Kubernetes cluster sends: the given number of series, each with 9 or 10
// sorted labels (__name__, container, endpoint, instance, job, le on
// histogram buckets, namespace, node, pod, service) and the given number of
// samples 15 s apart. The same arguments always give the same request.
func Kubernetes(series, samples int) *prompb.WriteRequest {
	rng := rand.New(rand.NewPCG(uint64(series), uint64(samples)))
	metrics := [...]string{
		"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
		"container_network_receive_bytes_total", "kube_pod_status_phase",
		"kube_deployment_status_replicas_available", "apiserver_request_total",
		"http_server_requests_seconds_count", "http_server_requests_seconds_bucket",
		"go_goroutines", "process_resident_memory_bytes", "up",
	}
	namespaces := [...]string{"kube-system", "monitoring", "default", "payments", "checkout", "ingress-nginx", "cert-manager", "logging"}
	deployments := [...]string{"coredns", "kube-proxy", "prometheus-operator", "api-gateway", "checkout-service", "payment-worker", "nginx-ingress-controller", "fluent-bit"}
	buckets := [...]string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}
	const hex = "0123456789abcdef"
	const alnum = "bcdfghjklmnpqrstvwxz2456789"
	pick := func(alphabet string, n int) string {
		var b strings.Builder
		for range n {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}

	wr := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, series)}
	for i := range wr.Timeseries {
		metric := metrics[rng.IntN(len(metrics))]
		ns := namespaces[rng.IntN(len(namespaces))]
		deploy := deployments[rng.IntN(len(deployments))]
		ip := fmt.Sprintf("10.%d.%d.%d", rng.IntN(4), rng.IntN(256), rng.IntN(256))
		ls := []prompb.Label{
			{Name: "__name__", Value: metric},
			{Name: "container", Value: deploy},
			{Name: "endpoint", Value: "http-metrics"},
			{Name: "instance", Value: ip + ":8080"},
			{Name: "job", Value: ns + "/" + deploy},
		}
		if strings.HasSuffix(metric, "_bucket") {
			ls = append(ls, prompb.Label{Name: "le", Value: buckets[rng.IntN(len(buckets))]})
		}
		ls = append(ls,
			prompb.Label{Name: "namespace", Value: ns},
			prompb.Label{Name: "node", Value: fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", rng.IntN(256), rng.IntN(256))},
			prompb.Label{Name: "pod", Value: deploy + "-" + pick(hex, 10) + "-" + pick(alnum, 5)},
			prompb.Label{Name: "service", Value: deploy},
		)
		ts := prompb.TimeSeries{Labels: ls, Samples: make([]prompb.Sample, samples)}
		start := int64(1_700_000_000_000 + rng.IntN(15_000))
		for k := range ts.Samples {
			ts.Samples[k] = prompb.Sample{Value: float64(rng.IntN(1_000_000)) / 8, Timestamp: start + int64(k)*15_000}
		}
		wr.Timeseries[i] = ts
	}
	return wr
}

// KubernetesBytes is Kubernetes, marshaled.
func KubernetesBytes(series, samples int) []byte {
	return mustMarshal(Kubernetes(series, samples).Marshal())
}
