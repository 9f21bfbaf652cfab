package bench

import (
	"fmt"

	"github.com/prometheus/prometheus/prompb"
)

// KubernetesRequest builds a remote-write request shaped like what a
// Prometheus scraping a Kubernetes cluster sends: cAdvisor- and
// kube-state-metrics-like series with 9 labels each (8 plus __name__), one
// sample per series at ts. Series i is the same series in every call, so
// repeated requests update existing series.
func KubernetesRequest(series int, ts int64) *prompb.WriteRequest {
	metrics := []string{
		"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
		"container_network_receive_bytes_total", "kube_pod_container_status_restarts_total",
		"container_fs_reads_bytes_total", "kube_pod_status_phase",
	}
	namespaces := []string{"kube-system", "monitoring", "payments", "checkout", "default", "ingress-nginx"}
	req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, series)}
	for i := range req.Timeseries {
		ns := namespaces[i%len(namespaces)]
		pod := fmt.Sprintf("%s-deployment-%08x-%05x", ns, uint32(i*2654435761), i%99991)
		req.Timeseries[i] = prompb.TimeSeries{
			Labels: []prompb.Label{
				{Name: "__name__", Value: metrics[i%len(metrics)]},
				{Name: "container", Value: "app"},
				{Name: "endpoint", Value: "https-metrics"},
				{Name: "instance", Value: fmt.Sprintf("10.%d.%d.%d:10250", i>>16&255, i>>8&255, i&255)},
				{Name: "job", Value: "kubelet"},
				{Name: "namespace", Value: ns},
				{Name: "node", Value: fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", i/250%250, i%250)},
				{Name: "pod", Value: pod},
				{Name: "service", Value: "kube-prometheus-stack-kubelet"},
			},
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: ts}},
		}
	}
	return req
}
