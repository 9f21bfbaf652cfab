package main

// End-to-end test with a real Prometheus 3.x peer, built from its Go module
// by scripts/build-prometheus3.sh (Debian ships only 2.x): a Prometheus 3
// Agent pushes remote-write 1.0, and a Prometheus 3 server configured for
// remote-write 2.0 is refused with 415. The central Prometheus is the Debian
// one of e2e_test.go.

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	// prometheus3Version must match what scripts/build-prometheus3.sh builds
	// by default (module v0.305.0 is Prometheus 3.5.0).
	prometheus3Version = "3.5.0"
	// prometheus3EnvVar names a Prometheus 3.x binary to use instead.
	prometheus3EnvVar  = "FEDGATE_PROMETHEUS3"
	prometheus3Missing = "run 'bash scripts/build-prometheus3.sh' (a few minutes, cached), or set " +
		prometheus3EnvVar + " to a Prometheus 3.x binary"
)

// The Prometheus 3 Agent runs agentConfig (remote-write 1.0, its default,
// bearer token, forging cluster-b's label). The server's config; {{...}}
// are filled in.
const (
	// A Prometheus 3 server sending remote-write 2.0, with basic auth.
	prom3RW2Config = `global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prom3-rw2-self
    static_configs:
      - targets: ['{{self}}']
remote_write:
  - url: http://{{fedgate}}/api/v1/write
    protobuf_message: io.prometheus.write.v2.Request
    basic_auth:
      username: cluster-b
      password: {{token}}
    queue_config:
      batch_send_deadline: 1s
`
)

// TestEndToEndPrometheus3 pins what Prometheus 3.5 does against fedgate:
//
//   - remote-write 1.0 from an Agent is accepted as sent: every push gets
//     204 and the series reach the central Prometheus with the cluster label
//     of the pushing tenant;
//   - remote-write 2.0 is refused with 415, and Prometheus 3.5 neither falls
//     back to 1.0 nor retries: it drops every batch as a "non-recoverable
//     error" (logged at most once a minute, its remote-write logger dedupes)
//     and keeps sending the next batches as 2.0. The message a queue sends is
//     fixed by protobuf_message when the queue starts; only 5xx and 429 are
//     retried (storage/remote/client.go, Client.Store). Such a sender must be
//     switched to protobuf_message: prometheus.WriteRequest, as the README says.
func TestEndToEndPrometheus3(t *testing.T) {
	skipIfShort(t)
	requirePeers(t) // the central Prometheus
	prom3 := requirePrometheus3(t)
	fg := startFedgate(t)
	metricsURL := "http://" + fg.internal + "/metrics"
	agentTenant, rw2Tenant := clusters[0], clusters[1]

	addrAgent := freeAddr(t)
	agent := startPrometheus3(t, prom3, "prom3-agent", addrAgent,
		fill(agentConfig, "job", "prom3-agent-self", "self", addrAgent, "fedgate", fg.public, "token", agentTenant.token), true)
	addrRW2 := freeAddr(t)
	rw2 := startPrometheus3(t, prom3, "prom3-rw2", addrRW2,
		fill(prom3RW2Config, "self", addrRW2, "fedgate", fg.public, "token", rw2Tenant.token), false)
	addrCentral := freeAddr(t)
	centralProm := startPrometheus(t, "central-prometheus", addrCentral,
		fill(centralConfig, "fedgate_internal", fg.internal), false)
	procs := []*process{fg.process, agent, rw2, centralProm}
	central := "http://" + addrCentral
	deadline := time.Now().Add(25 * time.Second)

	// (a) The Agent's series arrive, all stamped with its tenant's ID.
	const agentJob = "prom3-agent-self"
	waitUpStamped(t, central, agentJob, agentTenant.id, time.Until(deadline), procs...)
	v, err := promQuery(central, fmt.Sprintf(`count by (cluster_id) ({job=%q})`, agentJob))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Metric["cluster_id"] != agentTenant.id {
		t.Errorf("series of job %s: want all with cluster_id=%q, got %s", agentJob, agentTenant.id, summary(v))
	}

	// (b) Three refused requests are three batches (nothing is retried, see
	// below), so the sender kept sending 2.0 after its first 415.
	eventually(t, time.Until(deadline), "fedgate answers the remote-write 2.0 sender 415, three times", func() error {
		n, err := scrapeValue(metricsURL, `fedgate_write_requests_total{code="415"}`)
		if err == nil && n < 3 {
			err = fmt.Errorf("%v so far", n)
		}
		return err
	}, procs...)
	refusedBy := time.Now()

	// The sender counts every sample it sent as failed, none as retried.
	rw2Metrics := "http://" + addrRW2 + "/metrics"
	eventually(t, time.Until(deadline), "the remote-write 2.0 sender drops, and does not retry, what it sent", func() error {
		sent, err := scrapeValue(rw2Metrics, "prometheus_remote_storage_samples_total")
		if err != nil {
			return err
		}
		failed, err := scrapeValue(rw2Metrics, "prometheus_remote_storage_samples_failed_total")
		if err != nil {
			return err
		}
		retried, err := scrapeValue(rw2Metrics, "prometheus_remote_storage_samples_retried_total")
		if err != nil {
			return err
		}
		if retried != 0 {
			return final{fmt.Errorf("%v samples retried", retried)}
		}
		if sent == 0 || failed != sent { // unequal while a batch is in flight
			return fmt.Errorf("sent %v, failed %v", sent, failed)
		}
		return nil
	}, procs...)
	eventually(t, time.Until(deadline), "the remote-write 2.0 sender logs the 415 as non-recoverable", func() error {
		b, err := os.ReadFile(rw2.log)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `msg="non-recoverable error"`) && strings.Contains(line, "415 Unsupported Media Type") {
				return nil
			}
		}
		return errors.New("no such line yet")
	}, procs...)

	// Once the central has scraped /federate after those refusals, the 2.0
	// sender's series are still absent (no fallback), and every push fedgate
	// answered was either the Agent's accepted one (204) or a 415.
	eventually(t, time.Until(deadline), "central scrapes /federate after the refusals", func() error {
		v, err := promQuery(central, `timestamp(up{job="federate"})`)
		if err != nil {
			return err
		}
		if len(v) != 1 {
			return fmt.Errorf("want one series; result: %s", summary(v))
		}
		var ts float64
		if _, err := fmt.Sscan(v[0].value(), &ts); err != nil {
			return final{err}
		}
		if ts <= float64(refusedBy.UnixMilli())/1000 {
			return fmt.Errorf("last scrape at %v", ts)
		}
		return nil
	}, procs...)
	requireEmpty(t, central, `{job="prom3-rw2-self"}`)
	requireEmpty(t, central, fmt.Sprintf(`{cluster_id=%q}`, rw2Tenant.id))
	codes, err := writeStatusCodes(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(codes, []string{"204", "415"}) {
		t.Errorf("fedgate_write_requests_total codes %v, want [204 415]", codes)
	}
}

// requirePrometheus3 returns the Prometheus 3.x binary from
// $FEDGATE_PROMETHEUS3, or else where scripts/build-prometheus3.sh puts it,
// and fails the test when there is none.
func requirePrometheus3(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(prometheus3EnvVar)
	if bin == "" {
		cache := os.Getenv("FEDGATE_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				t.Fatalf("Prometheus 3 peer: %v; %s", err, prometheus3Missing)
			}
			cache = filepath.Join(home, ".cache", "fedgate")
		}
		bin = filepath.Join(cache, "prometheus-"+prometheus3Version, "prometheus")
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("Prometheus 3 peer %s: %v; %s", bin, err, prometheus3Missing)
	}
	if !strings.HasPrefix(string(out), "prometheus, version 3.") {
		t.Fatalf("Prometheus 3 peer %s is not 3.x: %.80q; %s", bin, out, prometheus3Missing)
	}
	return bin
}

// startPrometheus3 starts a Prometheus 3.x in server or Agent mode (the
// 3.x flag is --agent) on addr and waits until it is ready.
func startPrometheus3(t *testing.T, bin, name, addr, config string, agent bool) *process {
	t.Helper()
	return startPrometheusBin(t, bin, "--agent", name, addr, config, agent)
}

// writeStatusCodes returns the code labels of fedgate_write_requests_total
// in fedgate's /metrics, sorted.
func writeStatusCodes(metricsURL string) ([]string, error) {
	code, body, err := get(metricsURL)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", metricsURL, code)
	}
	var codes []string
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, `fedgate_write_requests_total{code="`)
		if !ok {
			continue
		}
		c, _, ok := strings.Cut(rest, `"`)
		if !ok {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return codes, nil
}
